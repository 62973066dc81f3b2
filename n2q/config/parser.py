"""INI text -> :class:`Config` (spec/ini.md: lines, sections, bases, variables).

Nothing is resolved here: values are kept raw with their source line and resolved when read.
"""

from __future__ import annotations

from pathlib import Path

from n2q.config.model import Config, Entry, Section
from n2q.config.source import read_source, template_roots
from n2q.config.template import (
    find_template,
    is_template_header,
    render_file,
    split_template_header,
)
from n2q.errors import UserError, debug, warning

_MAX_TEMPLATE_DEPTH = 16


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


def logical_lines(text: str, file: str,
                  origins: list[tuple[str, int]] | None = None) -> list[tuple[int, str]]:
    """(first physical line number, text) of each logical line: comments cut, trimmed,
    ``\\`` continuations joined, blank lines skipped. ``origins`` (rendered templates) maps
    line numbers to the (file, line) they came from, for the unclosed-quote error."""
    if text.startswith("\ufeff"):
        text = text[1:]
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        where = origins[number - 1] if origins else (file, number)
        body = _strip_comment(raw, *where).strip()
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


def _shown(body: str, quote: bool) -> str:
    """The line quoted in an error, or "this line" for a line of an included file (an error
    never echoes what an include read)."""
    return f"'{body}'" if quote else "this line"


def parse_header(body: str, file: str, line: int, quote: bool = True) -> tuple[str, list[str]]:
    """``[NAME] BASE1 BASE2`` -> (NAME, [BASE1, BASE2]); NAME ends at the first ``]``."""
    end = body.find("]")
    if end < 0:
        raise UserError("section header without ']': write [NAME]", file=file, line=line)
    name = body[1:end].strip()
    if not name:
        raise UserError("empty section name: write [NAME]", file=file, line=line)
    bases = body[end + 1:].split()
    if any("=" in b for b in bases):
        raise UserError(f"{_shown(body, quote)} mixes a section header and KEY=VALUE: put "
                        f"[{name}] alone on its line (optionally followed by base section "
                        "names)", file=file, line=line, section=name)
    return name, bases


class _Builder:
    """Feeds logical lines into a Config.

    A template section ``[NAME@FILE]`` is rendered when its body ends (next header or end of
    the text), with its keys as parameters, and the result parsed in place (N2D2's order)."""

    def __init__(self, config: Config):
        self.config = config
        self.current = config.globals
        self.body_keys: set[str] = set()  # keys written in the current body (not inherited)
        self.pending: tuple[Section, str, str] | None = None  # (section, path text, file)
        self.parent: str | None = None  # template section whose rendering is being parsed
        self.depth = 0  # templates being rendered, one inside the other

    def header(self, name: str, bases: list[str], file: str, line: int) -> Section:
        section = Section(self.config, name, bases, file, line)
        section.parent = self.parent
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
        self.body_keys = set()
        return section

    def assignment(self, body: str, file: str, line: int, quote: bool = True) -> None:
        if "=" not in body:
            raise UserError(f"{_shown(body, quote)} is neither [SECTION] nor KEY=VALUE: add '=' or "
                            "comment the line out with ';'", file=file, line=line,
                            section=self.current.name or None)
        key, value = body.split("=", 1)
        key, value = key.rstrip(), _unquote(value.lstrip())
        if not key or key == "$":
            raise UserError("empty key name before '='", file=file, line=line,
                            section=self.current.name or None)
        entry = Entry(value, file, line)
        is_variable = key.startswith("$")
        table = self.current.variables if is_variable else self.current.entries
        name = key[1:] if is_variable else key
        self._report_override(key, table.get(name), file, line)
        self.body_keys.add(key)
        table[name] = entry

    def _report_override(self, key: str, previous: Entry | None, file: str, line: int) -> None:
        if previous is None:
            return
        section = f"[{self.current.name}] " if self.current.name else ""
        where = f"{file}:{line}: {section}{key}: "
        message = f"overriding property {key} (previous value was {previous.value})"
        if key in self.body_keys:  # written twice in one body: probably a mistake
            warning(f"{where}{message} at {previous.file}:{previous.line}")
        else:  # inherited from a base: overriding is the point of bases
            debug(f"{where}{message}, inherited from {previous.file}:{previous.line}")

    def template_header(self, name: str, bases: list[str], file: str, line: int) -> None:
        section_name, path_text = split_template_header(name)
        if not section_name or not path_text:
            raise UserError("template header needs a name and a file: write "
                            "[NAME@FILE.ini.tpl]", file=file, line=line, section=name)
        section = self.header(section_name, bases, file, line)
        section.used = True  # consumed by the rendering
        self.pending = (section, path_text, file)

    def flush_template(self) -> None:
        """Render the pending template section (its body is complete) and parse the result."""
        if self.pending is None:
            return
        section, path_text, file = self.pending
        self.pending = None
        roots = template_roots(self.config.path)
        path = find_template(path_text, file, section.name, section.line, roots)
        params = {"SECTION_NAME": section.name, "SECTION_FILE_NAME": str(path)}
        params.update({key: _template_parameter(section, key) for key in section.entries})
        try:
            text, origins = render_file(path, params, roots)
        except UserError as err:
            err.section = err.section or section.name
            raise
        if self.depth >= _MAX_TEMPLATE_DEPTH:
            raise UserError(f"templates nested more than {_MAX_TEMPLATE_DEPTH} deep (a "
                            "template instantiating itself?)", file=section.file,
                            line=section.line, section=section.name)
        outer = self.parent
        self.parent = section.name
        self.depth += 1
        # N2D2: keys before the first header of the rendered text go to the global section
        self.current, self.body_keys = self.config.globals, set()
        try:
            parse_text(self.config, text, str(path), self, origins)
        finally:
            self.parent = outer
            self.depth -= 1
        self.current, self.body_keys = self.config.globals, set()


def _template_parameter(section: Section, key: str) -> str:
    """A template parameter is the key's value resolved now (N2D2 does the same), so that
    ``{% if STRIDES == 2 %}`` sees ``2`` for ``STRIDES=$(1+1)``. A value that cannot be
    resolved yet (``[sp]_EpochSize``...) is passed raw and resolved where it lands."""
    entry = section.entries[key]
    try:
        return section.config.resolve(entry.value, section, key, entry)
    except UserError:
        return entry.value


def parse_text(config: Config, text: str, file: str, builder: _Builder | None = None,
               origins: list[tuple[str, int]] | None = None) -> None:
    """Parse INI ``text`` (from ``file``; ``origins`` maps its lines when it was rendered from
    templates) into ``config``."""
    builder = builder or _Builder(config)
    for line, body in logical_lines(text, file, origins):
        where_file, where_line = origins[line - 1] if origins else (file, line)
        quote = where_file == file  # not a line of an {% include %}d file
        if body.startswith("["):
            builder.flush_template()
            name, bases = parse_header(body, where_file, where_line, quote)
            if is_template_header(name):
                builder.template_header(name, bases, where_file, where_line)
            else:
                builder.header(name, bases, where_file, where_line)
        else:
            builder.assignment(body, where_file, where_line, quote)
    builder.flush_template()


def load_config(path: str | Path) -> Config:
    """Read an INI file into a :class:`Config` (UserError if unreadable)."""
    path = Path(path)
    text = read_source(path, "INI file")
    config = Config(path)
    parse_text(config, text, str(path))
    return config
