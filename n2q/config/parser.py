"""INI text -> :class:`Config` (spec/ini.md: lines, sections, bases, variables).

Nothing is resolved here: values are kept raw with their source line and resolved when read.
"""

from __future__ import annotations

from pathlib import Path

from n2q.config.model import Config, Entry, Section
from n2q.errors import UserError, warning


def _strip_comment(text: str, file: str, line: int) -> str:
    """Cut at the first ``;`` or ``#`` outside a double-quoted span."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch in ";#" and not quoted:
            return text[:i]
    if quoted:
        raise UserError('a double quote (") is not closed on this line: close it',
                        file=file, line=line)
    return text


def logical_lines(text: str, file: str) -> list[tuple[int, str]]:
    """(first physical line number, text) of each logical line: comments cut, trimmed,
    ``\\`` continuations joined, blank lines skipped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        body = _strip_comment(raw, file, number).strip()
        if pending is not None:
            start, acc = pending
            body = acc + " " + body if acc else body
            number = start
        if body.endswith("\\"):
            pending = (number, body[:-1].rstrip())
            continue
        pending = None
        if body:
            out.append((number, body))
    if pending is not None and pending[1]:
        out.append(pending)
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def parse_header(body: str, file: str, line: int) -> tuple[str, list[str]]:
    end = body.find("]")
    if end < 0:
        raise UserError("section header without ']': write [NAME]", file=file, line=line)
    name = body[1:end].strip()
    if not name:
        raise UserError("empty section name: write [NAME]", file=file, line=line)
    return name, body[end + 1:].split()


class _Builder:
    """Feeds logical lines into a Config; templates plug in through ``expand_template``."""

    def __init__(self, config: Config):
        self.config = config
        self.current = config.globals

    def header(self, name: str, bases: list[str], file: str, line: int) -> None:
        section = Section(self.config, name, bases, file, line)
        for base_name in reversed(bases):  # first listed wins: copy it last
            base = self.config.get(base_name)
            if base is None:
                raise UserError(f"base section [{base_name}] is not defined before this "
                                "header: define it earlier in the file", file=file, line=line,
                                section=name)
            base.used = True
            section.entries.update(base.entries)
            section.variables.update(base.variables)
        self.config.add_section(section)
        self.current = section

    def assignment(self, body: str, file: str, line: int) -> None:
        if "=" not in body:
            raise UserError(f"'{body}' is neither [SECTION] nor KEY=VALUE: add '=' or "
                            "comment the line out with ';'", file=file, line=line,
                            section=self.current.name or None)
        key, value = body.split("=", 1)
        key, value = key.rstrip(), _unquote(value.lstrip())
        entry = Entry(value, file, line)
        if key.startswith("$"):
            self.current.variables[key[1:]] = entry
            return
        if not key:
            raise UserError("empty key name before '='", file=file, line=line,
                            section=self.current.name or None)
        previous = self.current.entries.get(key)
        if previous is not None and (previous.file, previous.line) >= (file, self.current.line) \
                and previous.file == file:
            warning(f"{file}:{line}: [{self.current.name}] {key}: overriding property {key} "
                    f"(previous value was {previous.value})")
        self.current.entries[key] = entry


def parse_text(config: Config, text: str, file: str, builder: _Builder | None = None) -> None:
    from n2q.config.template import expand_template, is_template_header

    builder = builder or _Builder(config)
    for line, body in logical_lines(text, file):
        if body.startswith("["):
            name, bases = parse_header(body, file, line)
            if is_template_header(name):
                rendered, tpl_file = expand_template(config, builder, name, bases, file, line)
                parse_text(config, rendered, tpl_file, builder)
                continue
            builder.header(name, bases, file, line)
        else:
            builder.assignment(body, file, line)


def load_config(path: str | Path) -> Config:
    """Read an INI file into a :class:`Config` (UserError if unreadable)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("INI file not found: check the path", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the INI file ({exc})", file=path) from None
    config = Config(path)
    parse_text(config, text, str(path))
    return config
