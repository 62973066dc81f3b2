"""Typed, validated access to a parsed INI file (see ARCHITECTURE.md, config).

A :class:`Config` holds :class:`Section` objects whose raw entries remember where they were
written. Values are resolved lazily, when read, because references such as ``[sp]_EpochSize``
or ``[conv1]_NbOutputs`` only exist once the data base and earlier cells have been built.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from n2q.errors import UserError
from n2q.errors import did_you_mean as _did_you_mean

REQUIRED: Any = object()  # sentinel: a read without default raises "missing key"

INT_MIN, INT_MAX = -(2 ** 31), 2 ** 31 - 1  # N2D2 reads integer keys as C++ int
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass
class Entry:
    """A raw ``key=value`` as written, with its source location."""

    value: str
    file: str
    line: int


class Section:
    """One ``[NAME] BASES`` section: its own entries (inherited ones copied in) and variables."""

    def __init__(self, config: Config, name: str, bases: list[str], file: str, line: int):
        self.config = config
        self.name = name
        self.bases = bases
        self.file = file
        self.line = line
        self.entries: dict[str, Entry] = {}
        self.variables: dict[str, Entry] = {}
        self.used = False
        self.index = -1  # position in file order, set by Config.add_section
        self.parent: str | None = None  # the template section that generated this one

    # -- merged view -------------------------------------------------------------------------
    def _config_sections(self) -> list[Section]:
        """Sections named by ConfigSection=, later ones winning (so returned last first)."""
        entry = self.entries.get("ConfigSection")
        if entry is None:
            return []
        text = self.config.resolve(entry.value, self, "ConfigSection", entry)
        names = text.replace(",", " ").split()
        found = []
        for n in names:
            sec = self.config.get(n)
            if sec is None:
                raise UserError(f"no section [{n}] (named by ConfigSection)", file=entry.file,
                                line=entry.line, section=self.name, key="ConfigSection")
            sec.used = True
            found.append(sec)
        return list(reversed(found))

    def entry(self, key: str) -> Entry | None:
        """The raw entry of ``key``: own (incl. inherited) first, then the ConfigSections."""
        if key in self.entries:
            return self.entries[key]
        for sec in self._config_sections():
            if key in sec.entries:
                return sec.entries[key]
        return None

    def keys(self) -> list[str]:
        keys = list(self.entries)
        for sec in reversed(self._config_sections()):
            keys.extend(k for k in sec.entries if k not in keys)
        return keys

    def __contains__(self, key: str) -> bool:
        return self.entry(key) is not None

    def line_of(self, key: str | None) -> tuple[str, int]:
        entry = self.entry(key) if key else None
        return (entry.file, entry.line) if entry else (self.file, self.line)

    def error(self, key: str | None, message: str) -> UserError:
        file, line = self.line_of(key)
        return UserError(message, file=file, line=line, section=self.name or None, key=key)

    # -- typed reads -------------------------------------------------------------------------
    def str(self, key: str, default: Any = REQUIRED) -> Any:
        """The resolved text of ``key`` (``default`` when absent; UserError if required).

        A ``${NAME}`` that is neither an INI variable nor an environment variable is an error
        here (an environment variable is left for :meth:`path` to expand)."""
        text = self._resolved(key, default)
        if text is not default and "${" in text:
            from n2q.config.expand import env_lookup, unresolved_variables

            for name in unresolved_variables(text, braced_only=True):
                if env_lookup(name) is None:
                    raise self._undefined(key, name)
        return text

    def _resolved(self, key: str, default: Any) -> Any:
        self.used = True
        self._config_sections()  # a read uses the ConfigSections too (and checks they exist)
        entry = self.entry(key)
        if entry is None:
            if default is REQUIRED:
                close = difflib.get_close_matches(key, self.keys(), n=1, cutoff=0.8)
                hint = f" (is {close[0]} a misspelling?)" if close else ""
                raise self.error(None, f"missing key {key}{hint}: add {key}=... to this "
                                       "section")
            return default
        return self.config.resolve(entry.value, self, key, entry)

    def _undefined(self, key: str, name: str) -> UserError:
        from n2q.config.expand import undefined_variable_error

        return self.error(key, undefined_variable_error(name, self).message)

    def _typed(self, key: str, default: Any) -> tuple[bool, Any]:
        """(present, resolved text) for a typed read: an ``${VAR}`` left in the text is an
        undefined variable, reported here rather than as "not a number"."""
        if self.entry(key) is None:
            return False, self._resolved(key, default)
        text = self._resolved(key, REQUIRED).strip()
        from n2q.config.expand import unresolved_variables

        names = unresolved_variables(text, braced_only=True)
        if names:
            raise self._undefined(key, names[0])
        return True, text

    def _convert(self, key: str, text: str, kind: str) -> Any:
        what = "an integer" if kind == "int" else "a number"
        # ASCII as N2D2 writes numbers: Python would also read "１２" and "1_000"
        if not text.isascii() or "_" in text:
            raise self.error(key, f"'{text}' is not {what} (write ASCII digits)")
        try:
            if kind == "int":
                value = self._to_int(key, text)
                if not INT_MIN <= value <= INT_MAX:
                    raise self.error(key, f"{text} is out of range: N2D2 reads integers of 32 "
                                          f"bits ({INT_MIN} to {INT_MAX})")
                return value
            number = float(text)
        except ValueError:
            raise self.error(key, f"'{text}' is not {what}") from None
        if not math.isfinite(number):  # NaN or inf would poison every value computed from it
            raise self.error(key, f"'{text}' is not a finite number")
        return number

    def _to_int(self, key: str, text: str) -> int:
        """N2D2 models divide with Python 2 semantics (``$([sp]_EpochSize * 120 / 256)``): an
        integer key given a float takes its integer part (with a notice if it had decimals)."""
        text = text.strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        if value != int(value):
            file, line = self.line_of(key)
            # once per written line: a ConfigSection key is read by every cell using it
            self.config.notice_once((file, line), f"{file}:{line}: [{self.name}] {key}: "
                                                  f"{text} is not an integer, using {int(value)}")
        return int(value)

    def int(self, key: str, default: Any = REQUIRED) -> Any:
        present, text = self._typed(key, default)
        return self._convert(key, text, "int") if present else text

    def float(self, key: str, default: Any = REQUIRED) -> Any:
        present, text = self._typed(key, default)
        return self._convert(key, text, "float") if present else text

    def bool(self, key: str, default: Any = REQUIRED) -> Any:
        present, text = self._typed(key, default)
        if not present:
            return text
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        # N2D2 reads booleans through numbers: any non-zero number is true
        try:
            return float(low) != 0.0
        except ValueError:
            raise self.error(key, f"'{text}' is not a boolean: use 0 or 1 (or true/false, "
                                  "yes/no)") from None

    def strs(self, key: str, default: Any = REQUIRED) -> Any:
        present, text = self._typed(key, default)
        return text.split() if present else text

    def floats(self, key: str, default: Any = REQUIRED) -> Any:
        present, text = self._typed(key, default)
        return [self._convert(key, w, "float") for w in text.split()] if present else text

    def ints(self, key: str, default: Any = REQUIRED) -> Any:
        present, text = self._typed(key, default)
        return [self._convert(key, w, "int") for w in text.split()] if present else text

    def enum(self, key: str, choices: Sequence[str], default: Any = REQUIRED) -> Any:
        present, text = self._typed(key, default)
        if present and text not in choices:
            hint = _did_you_mean(text, choices)
            raise self.error(key, f"unknown value '{text}'{hint}; valid: {', '.join(choices)}")
        return text

    def path(self, key: str, default: Any = REQUIRED, base: str | Path | None = None) -> Any:
        """A path: environment variables expanded (``${N2D2_DATA}`` = ``${N2Q_DATA}``),
        ``~`` expanded, a relative path joined to ``base`` when given."""
        present, text = self._typed_path(key, default)
        if not present:
            return text
        p = Path(text).expanduser()
        if base is not None and not p.is_absolute():
            p = Path(base) / p
        return p

    def _typed_path(self, key: str, default: Any) -> tuple[bool, Any]:
        if self.entry(key) is None:
            return False, self._resolved(key, default)
        from n2q.config.expand import expand_env, unresolved_variables

        text = expand_env(self._resolved(key, REQUIRED).strip())
        names = unresolved_variables(text)
        if names:
            name = names[0]
            alias = {"N2D2_DATA": "N2Q_DATA", "N2D2_MODELS": "N2Q_MODELS"}.get(name, name)
            raise self.error(key, f"${{{name}}} is neither an INI variable nor an environment "
                                  f"variable: define ${name}=... in the INI or export {alias}")
        return True, text

    def subkeys(self, prefix: str) -> list[str]:
        return [k[len(prefix):] for k in self.keys() if k.startswith(prefix)]

    def check_keys(self, known: Iterable[str], kind: str, prefixes: Iterable[str] = ()) -> None:
        """Strict keys: refuse the first key that no reader of this section knows."""
        self.used = True
        known = set(known)
        prefixes = tuple(prefixes)
        for key in self.keys():
            if key in known or (prefixes and key.startswith(prefixes)):
                continue
            raise self.error(key, f"unknown key for {kind}{_did_you_mean(key, known)}")

    def __repr__(self) -> str:
        return f"Section({self.name!r}, {self.file}:{self.line})"


class Config:
    """A whole INI file: global section, named sections in file order, generated keys."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.globals = Section(self, "", [], str(self.path), 0)
        self._sections: dict[str, Section] = {}
        self._order: list[Section] = []
        self._noticed: set[object] = set()
        self.generated: dict[tuple[str, str], Any] = {}

    @property
    def sections(self) -> list[Section]:
        return list(self._order)

    def add_section(self, section: Section) -> None:
        if section.name in self._sections:
            first = self._sections[section.name]
            raise UserError(f"section defined twice (first at {first.file}:{first.line}); "
                            "rename one of them", file=section.file, line=section.line,
                            section=section.name)
        section.index = len(self._sections)
        self._sections[section.name] = section
        self._order.append(section)

    def get(self, name: str) -> Section | None:
        return self._sections.get(name)

    def __getitem__(self, name: str) -> Section:
        sec = self._sections.get(name)
        if sec is None:
            raise self._missing_section(name)
        return sec

    def _missing_section(self, name: str) -> UserError:
        """Point at the first value that refers to the missing section, if any (ResNet-18-BN.ini
        reads [sp]SizeX without an [sp] section), else at the file."""
        for section in [self.globals, *self.sections]:
            for key, entry in section.entries.items():
                if f"[{name}]" in entry.value:
                    return UserError(f"refers to [{name}] but there is no [{name}] section: "
                                     "add it to the INI file", file=entry.file, line=entry.line,
                                     section=section.name or None, key=key)
        return UserError(f"missing section [{name}]: add it to the INI file", file=self.path)

    def __contains__(self, name: str) -> bool:
        return name in self._sections

    def set_generated(self, section: str, key: str, value: Any) -> None:
        """Publish a generator-set key such as ``[sp]_EpochSize`` or ``[conv1]_NbOutputs``."""
        self.generated[(section, key)] = value

    def notice_once(self, what: object, message: str) -> None:
        """A notice printed once per ``what`` for this configuration."""
        if what not in self._noticed:
            self._noticed.add(what)
            from n2q.errors import notice

            notice(message)

    def unused_sections(self) -> list[str]:
        return [s.name for s in self.sections if not s.used]

    def previous_section(self, section: Section) -> Section | None:
        """The section before ``section`` in file order (``${PREV_SECTION_NAME}``). Like N2D2,
        the first section rendered by a template skips the template section itself."""
        i = section.index
        if i <= 0 or self._order[i] is not section:
            return None
        prev = self._order[i - 1]
        if section.parent is not None and prev.name == section.parent and i >= 2:
            prev = self._order[i - 2]
        return prev

    def resolve(self, text: str, section: Section, key: str, entry: Entry | None = None) -> str:
        from n2q.config.expand import resolve_value

        return resolve_value(self, text, section, key, entry)
