"""``[NAME@FILE.ini.tpl]`` template sections (spec/ini.md, Templates).

N2D2's template language, Jinja-like but much smaller:

- ``{{VAR}}``: the value of a parameter (an undefined one is an error);
- ``{% if VAR == x %}``, ``!=``, ``{% if VAR exists %}``, ``{% if VAR not_exists %}``,
  ``{% else %}``, ``{% endif %}``;
- ``{% for I in range(a, b) %}...{% endfor %}`` (``range(n)`` = 0..n-1; a, b are numbers or
  parameter names);
- ``{% set VAR %}text{% endset %}``: (re)defines a parameter for the rest of the rendering;
- ``{% block VAR %}...{% endblock %}``: repeated int(VAR) times; in pass i, ``{{#}}`` is i and
  every parameter ``VAR[i]SUFFIX`` is also visible as ``SUFFIX``;
- ``{% include FILE %}``: FILE (relative to the including file) is inlined.

Templates and includes come only from the INI's folder or the template path (N2D2_MODELS);
rendering is bounded (template_render.py).

The parameters are the keys of the template section plus ``SECTION_NAME`` and
``SECTION_FILE_NAME``. Rendering keeps, for every output line, the template file and line it
came from, so that errors in the rendered INI text point into the template.
"""

from __future__ import annotations

from pathlib import Path

from n2q.config.source import inside_roots, read_source, template_roots
from n2q.config.template_nodes import Block, For, If, Node, Set, Text, Var
from n2q.config.template_render import (  # noqa: F401 (bounds re-exported)
    MAX_LOOP_PASSES,
    MAX_OUTPUT_CHARS,
    Output,
    render_nodes,
)
from n2q.errors import UserError

_MAX_INCLUDE_DEPTH = 16
_CONTROLS = "if, else, endif, for, endfor, set, endset, block, endblock, include"


def is_template_header(name: str) -> bool:
    return "@" in name


def split_template_header(name: str) -> tuple[str, str]:
    """``conv2.1@${N2D2_MODELS}/ResNet-block.ini.tpl`` -> (``conv2.1``, the path text)."""
    section, _, path = name.partition("@")
    return section.strip(), path.strip()


class _Parser:
    """Source text -> list of nodes; ``{% include %}`` is inlined while parsing."""

    def __init__(self, source: str, file: str, roots: list[Path], depth: int = 0):
        self.source = source
        self.file = file
        self.roots = roots  # folders includes may come from (source.template_roots)
        self.depth = depth
        self.pos = 0
        self.line = 1

    def fail(self, message: str, line: int | None = None) -> UserError:
        return UserError(f"template: {message}", file=self.file, line=line or self.line)

    def _advance(self, end: int) -> str:
        text = self.source[self.pos:end]
        self.line += text.count("\n")
        self.pos = end
        return text

    def parse(self, closers: tuple[str, ...] = ()) -> tuple[list[Node], str, int]:
        """Nodes up to one of ``closers`` (a control word); returns (nodes, closer, its line)."""
        nodes: list[Node] = []
        while True:
            start = self._next_tag()
            if start < 0:
                if self.pos < len(self.source):
                    line = self.line
                    nodes.append(Text(self.file, line, self._advance(len(self.source))))
                if closers:
                    raise self.fail(f"missing {{% {closers[-1]} %}} before the end of the file")
                return nodes, "", self.line
            if start > self.pos:
                line = self.line
                nodes.append(Text(self.file, line, self._advance(start)))
            closer = self._tag(nodes, closers)
            if closer:
                return nodes, closer, self.line

    def _next_tag(self) -> int:
        a = self.source.find("{{", self.pos)
        b = self.source.find("{%", self.pos)
        found = [i for i in (a, b) if i >= 0]
        return min(found) if found else -1

    def _tag(self, nodes: list[Node], closers: tuple[str, ...]) -> str:
        """Consume one ``{{...}}`` or ``{%...%}`` at self.pos; a closer word is returned."""
        line = self.line
        is_var = self.source.startswith("{{", self.pos)
        end_mark = "}}" if is_var else "%}"
        end = self.source.find(end_mark, self.pos + 2)
        if end < 0:
            raise self.fail(f"'{self.source[self.pos:self.pos + 2]}' without a closing "
                            f"'{end_mark}'")
        inner = self.source[self.pos + 2:end]
        self._advance(end + 2)
        if is_var:
            name = inner.strip()
            if not name:
                raise self.fail("empty {{ }}: write {{NAME}}", line)
            nodes.append(Var(self.file, line, name))
            return ""
        return self._control(inner, line, nodes, closers)

    def _control(self, inner: str, line: int, nodes: list[Node],
                 closers: tuple[str, ...]) -> str:
        words = inner.replace("(", " ").replace(")", " ").replace(",", " ").split()
        if not words:
            raise self.fail("empty {% %} control", line)
        word = words[0]
        if word in ("endif", "else", "endfor", "endset", "endblock"):
            if word not in closers:
                raise self.fail(f"{{% {word} %}} without a matching opening control", line)
            return word
        handler = {"if": self._if, "for": self._for, "set": self._set, "block": self._block,
                   "include": self._include}.get(word)
        if handler is None:
            raise self.fail(f"unknown control {{% {inner.strip()} %}}: valid are {_CONTROLS}",
                            line)
        nodes.extend(handler(words, inner, line))
        return ""

    def _if(self, words: list[str], inner: str, line: int) -> list[Node]:
        ops = ("==", "!=", "exists", "not_exists")
        if len(words) not in (3, 4) or words[2] not in ops or (
                (len(words) == 4) != (words[2] in ("==", "!="))):
            raise self.fail(f"bad {{% {inner.strip()} %}}: write {{% if VAR == value %}}, "
                            "!=, {% if VAR exists %} or {% if VAR not_exists %}", line)
        node = If(self.file, line, words[1], words[2], words[3] if len(words) == 4 else "")
        node.then, closer, _ = self.parse(("else", "endif"))
        if closer == "else":
            node.orelse, _, _ = self.parse(("endif",))
        return [node]

    def _for(self, words: list[str], inner: str, line: int) -> list[Node]:
        if len(words) not in (5, 6) or words[2] != "in" or words[3] != "range":
            raise self.fail(f"bad {{% {inner.strip()} %}}: write "
                            "{% for I in range(a, b) %} or {% for I in range(n) %}", line)
        start, stop = (words[4], words[5]) if len(words) == 6 else ("0", words[4])
        node = For(self.file, line, words[1], start, stop)
        node.body, _, _ = self.parse(("endfor",))
        return [node]

    def _set(self, words: list[str], inner: str, line: int) -> list[Node]:
        return [self._named_body(Set, words, inner, line, "value")]

    def _block(self, words: list[str], inner: str, line: int) -> list[Node]:
        return [self._named_body(Block, words, inner, line, "...")]

    def _named_body(self, kind: type[Set | Block], words: list[str], inner: str, line: int,
                    body_hint: str) -> Set | Block:
        """``{% set VAR %}`` / ``{% block VAR %}``: one name, then a body up to the matching
        ``{% endset %}`` / ``{% endblock %}``."""
        control = words[0]
        if len(words) != 2:
            raise self.fail(f"bad {{% {inner.strip()} %}}: write "
                            f"{{% {control} VAR %}}{body_hint}{{% end{control} %}}", line)
        node = kind(self.file, line, words[1])
        node.body, _, _ = self.parse((f"end{control}",))
        return node

    def _include(self, words: list[str], inner: str, line: int) -> list[Node]:
        if len(words) != 2:
            raise self.fail(f"bad {{% {inner.strip()} %}}: write {{% include FILE %}}", line)
        if self.depth >= _MAX_INCLUDE_DEPTH:
            raise self.fail(f"includes nested more than {_MAX_INCLUDE_DEPTH} deep "
                            "(a file including itself?)", line)
        path = _find_file(words[1], Path(self.file).parent)
        if path is None:
            raise self.fail(f"included file {words[1]} not found (relative to "
                            f"{Path(self.file).parent})", line)
        _check_inside(path, self.roots, self.file, line, None, "included file")
        source = read_source(path, "template file")
        nodes, _, _ = _Parser(source, str(path), self.roots, self.depth + 1).parse()
        return nodes


def _check_inside(path: Path, roots: list[Path], file: str, line: int, section: str | None,
                  what: str) -> None:
    """N2D2 reads templates next to the INI or on the template path: refuse anything else
    (a template is rendered and parsed, so reading /etc/passwd would quote it in errors).
    The message names the path given, never what the file holds."""
    if not inside_roots(path, roots):
        raise UserError(f"template: {what} {path} is outside the INI's folder and the template "
                        f"path ($N2D2_MODELS): move it next to the INI", file=file, line=line,
                        section=section)


def _find_file(text: str, directory: Path) -> Path | None:
    """A template path: env vars expanded; relative -> the including file's directory.

    N2D2's models write ``${N2D2_MODELS}/X.ini.tpl``; when that variable is unset (or points
    elsewhere) the file next to the including INI is used, as the spec asks."""
    from n2q.config.expand import expand_env, unresolved_variables

    expanded = expand_env(text)
    candidates: list[Path] = []
    if not unresolved_variables(expanded):
        candidates.append(Path(expanded).expanduser())
    stripped = expanded
    for name in unresolved_variables(expanded):
        stripped = stripped.replace("${" + name + "}", "").replace("$" + name, "")
    candidates.append(Path(stripped.lstrip("/\\")))
    candidates.append(Path(Path(expanded).name))
    for path in candidates:
        full = path if path.is_absolute() else directory / path
        if full.is_file():
            return full
    return None


def render_template(source: str, file: str, params: dict[str, str],
                    roots: list[Path] | None = None) -> tuple[str, list[tuple[str, int]]]:
    """Render template ``source`` (read from ``file``): (text, origin (file, line) per line).
    ``roots``: folders includes may come from (default: the template's folder and the
    template path)."""
    roots = template_roots(file) if roots is None else roots
    nodes, _, _ = _Parser(source, file, roots).parse()
    out = Output()
    render_nodes(nodes, dict(params), out)
    return out.finish()


def render_file(path: Path, params: dict[str, str],
                roots: list[Path] | None = None) -> tuple[str, list[tuple[str, int]]]:
    return render_template(read_source(path, "template file"), str(path), params, roots)


def find_template(text: str, including_file: str, section: str, line: int,
                  roots: list[Path] | None = None) -> Path:
    """The template file of a ``[NAME@FILE]`` header, or a located UserError; ``roots``:
    the folders it may come from (source.template_roots of the INI)."""
    directory = Path(including_file).parent
    path = _find_file(text, directory)
    if path is None:
        raise UserError(f"template file {text} not found (looked next to {including_file}"
                        f"{' and in $' + _first_var(text) if _first_var(text) else ''})",
                        file=including_file, line=line, section=section)
    roots = template_roots(including_file) if roots is None else roots
    _check_inside(path, roots, including_file, line, section, "template file")
    return path


def _first_var(text: str) -> str:
    from n2q.config.expand import unresolved_variables

    names = unresolved_variables(text)
    return names[0] if names else ""
