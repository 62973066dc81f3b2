"""Typed, validated access to a parsed INI file (see ARCHITECTURE.md, config).

A :class:`Config` holds :class:`Section` objects whose raw entries remember where they were
written. Values are resolved lazily, when read, because references such as ``[sp]_EpochSize``
or ``[conv1]_NbOutputs`` only exist once the data base and earlier cells have been built.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from n2q.errors import UserError

REQUIRED: Any = object()  # sentinel: a read without default raises "missing key"

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

    # -- merged view -------------------------------------------------------------------------
    def _config_sections(self) -> list[Section]:
        """Sections named by ConfigSection=, later ones winning (so returned last first)."""
        entry = self.entries.get("ConfigSection")
        if entry is None:
            return []
        names = [n.strip() for n in self.config.resolve(entry.value, self, "ConfigSection")
                 .replace(",", " ").split() if n.strip()]
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
        return UserError(message, file=file, line=line, section=self.name, key=key)

    # -- typed reads -------------------------------------------------------------------------
    def str(self, key: str, default: Any = REQUIRED) -> Any:
        self.used = True
        entry = self.entry(key)
        if entry is None:
            if default is REQUIRED:
                raise self.error(None, f"missing key {key}: add {key}=... to this section")
            return default
        return self.config.resolve(entry.value, self, key, entry)

    def _convert(self, key: str, text: str, kind: str) -> Any:
        try:
            if kind == "int":
                value = float(text) if any(c in text for c in ".eE") and not text.lstrip(
                    "+-").isdigit() else int(text)
                if isinstance(value, float):
                    if not math.isfinite(value):
                        raise ValueError
                    if value != int(value):
                        from n2q.errors import notice

                        file, line = self.line_of(key)
                        notice(f"{file}:{line}: [{self.name}] {key}: {text} is not an "
                               f"integer, using {int(value)}")
                    value = int(value)
                return value
            return float(text)
        except ValueError:
            raise self.error(key, f"'{text}' is not a{'n integer' if kind == 'int' else ' number'}"
                             ) from None

    def int(self, key: str, default: Any = REQUIRED) -> Any:
        text = self.str(key, default)
        return text if text is default and key not in self else self._convert(key, text, "int")

    def float(self, key: str, default: Any = REQUIRED) -> Any:
        text = self.str(key, default)
        return text if text is default and key not in self else self._convert(
            key, text, "float")

    def bool(self, key: str, default: Any = REQUIRED) -> Any:
        text = self.str(key, default)
        if text is default and key not in self:
            return default
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        # N2D2 reads booleans through numbers: any non-zero number is true
        try:
            return float(low) != 0.0
        except ValueError:
            raise self.error(key, f"'{text}' is not a boolean: use 0 or 1") from None

    def strs(self, key: str, default: Any = REQUIRED) -> Any:
        text = self.str(key, default)
        if text is default and key not in self:
            return default
        return text.split()

    def floats(self, key: str, default: Any = REQUIRED) -> Any:
        words = self.strs(key, default)
        if words is default and key not in self:
            return default
        return [self._convert(key, w, "float") for w in words]

    def ints(self, key: str, default: Any = REQUIRED) -> Any:
        words = self.strs(key, default)
        if words is default and key not in self:
            return default
        return [self._convert(key, w, "int") for w in words]

    def enum(self, key: str, choices: Sequence[str], default: Any = REQUIRED) -> Any:
        text = self.str(key, default)
        if text is default and key not in self:
            return default
        if text not in choices:
            hint = _did_you_mean(text, choices)
            raise self.error(key, f"unknown value '{text}'{hint}; valid: {', '.join(choices)}")
        return text

    def path(self, key: str, default: Any = REQUIRED, base: str | Path | None = None) -> Any:
        text = self.str(key, default)
        if text is default and key not in self:
            return default
        from n2q.config.expand import expand_env

        p = Path(expand_env(text)).expanduser()
        if base is not None and not p.is_absolute():
            p = Path(base) / p
        return p

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


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class Config:
    """A whole INI file: global section, named sections in file order, generated keys."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.globals = Section(self, "", [], str(self.path), 0)
        self._sections: dict[str, Section] = {}
        self.generated: dict[tuple[str, str], Any] = {}

    @property
    def sections(self) -> list[Section]:
        return list(self._sections.values())

    def add_section(self, section: Section) -> None:
        if section.name in self._sections:
            first = self._sections[section.name]
            raise UserError(f"section defined twice (first at {first.file}:{first.line}); "
                            "rename one of them", file=section.file, line=section.line,
                            section=section.name)
        self._sections[section.name] = section

    def get(self, name: str) -> Section | None:
        return self._sections.get(name)

    def __getitem__(self, name: str) -> Section:
        sec = self._sections.get(name)
        if sec is None:
            raise UserError(f"missing section [{name}]: add it to the INI file",
                            file=self.path)
        return sec

    def __contains__(self, name: str) -> bool:
        return name in self._sections

    def set_generated(self, section: str, key: str, value: Any) -> None:
        """Publish a generator-set key such as ``[sp]_EpochSize`` or ``[conv1]_NbOutputs``."""
        self.generated[(section, key)] = value

    def unused_sections(self) -> list[str]:
        return [s.name for s in self.sections if not s.used]

    def previous_section(self, section: Section) -> Section | None:
        names = list(self._sections)
        if section.name not in names:
            return None
        i = names.index(section.name)
        return self._sections[names[i - 1]] if i > 0 else None

    def resolve(self, text: str, section: Section, key: str, entry: Entry | None = None) -> str:
        from n2q.config.expand import resolve_value

        return resolve_value(self, text, section, key, entry)
