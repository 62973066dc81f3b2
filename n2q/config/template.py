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

The parameters are the keys of the template section plus ``SECTION_NAME`` and
``SECTION_FILE_NAME``. Rendering keeps, for every output line, the template file and line it
came from, so that errors in the rendered INI text point into the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from n2q.errors import UserError

_MAX_INCLUDE_DEPTH = 16
_CONTROLS = "if, else, endif, for, endfor, set, endset, block, endblock, include"


def is_template_header(name: str) -> bool:
    return "@" in name


def split_template_header(name: str) -> tuple[str, str]:
    """``conv2.1@${N2D2_MODELS}/ResNet-block.ini.tpl`` -> (``conv2.1``, the path text)."""
    section, _, path = name.partition("@")
    return section.strip(), path.strip()


# -- syntax tree ---------------------------------------------------------------------------------
@dataclass
class _Node:
    file: str
    line: int


@dataclass
class _Text(_Node):
    text: str = ""


@dataclass
class _Var(_Node):
    name: str = ""


@dataclass
class _If(_Node):
    var: str = ""
    op: str = ""
    value: str = ""
    then: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)


@dataclass
class _For(_Node):
    var: str = ""
    start: str = "0"
    stop: str = ""
    body: list[_Node] = field(default_factory=list)


@dataclass
class _Set(_Node):
    var: str = ""
    body: list[_Node] = field(default_factory=list)


@dataclass
class _Block(_Node):
    var: str = ""
    body: list[_Node] = field(default_factory=list)


class _Parser:
    """Source text -> list of nodes; ``{% include %}`` is inlined while parsing."""

    def __init__(self, source: str, file: str, depth: int = 0):
        self.source = source
        self.file = file
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

    def parse(self, closers: tuple[str, ...] = ()) -> tuple[list[_Node], str, int]:
        """Nodes up to one of ``closers`` (a control word); returns (nodes, closer, its line)."""
        nodes: list[_Node] = []
        while True:
            start = self._next_tag()
            if start < 0:
                if self.pos < len(self.source):
                    line = self.line
                    nodes.append(_Text(self.file, line, self._advance(len(self.source))))
                if closers:
                    raise self.fail(f"missing {{% {closers[-1]} %}} before the end of the file")
                return nodes, "", self.line
            if start > self.pos:
                line = self.line
                nodes.append(_Text(self.file, line, self._advance(start)))
            closer = self._tag(nodes, closers)
            if closer:
                return nodes, closer, self.line

    def _next_tag(self) -> int:
        a = self.source.find("{{", self.pos)
        b = self.source.find("{%", self.pos)
        found = [i for i in (a, b) if i >= 0]
        return min(found) if found else -1

    def _tag(self, nodes: list[_Node], closers: tuple[str, ...]) -> str:
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
            nodes.append(_Var(self.file, line, name))
            return ""
        return self._control(inner, line, nodes, closers)

    def _control(self, inner: str, line: int, nodes: list[_Node],
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

    def _if(self, words: list[str], inner: str, line: int) -> list[_Node]:
        ops = ("==", "!=", "exists", "not_exists")
        if len(words) not in (3, 4) or words[2] not in ops or (
                (len(words) == 4) != (words[2] in ("==", "!="))):
            raise self.fail(f"bad {{% {inner.strip()} %}}: write {{% if VAR == value %}}, "
                            "!=, {% if VAR exists %} or {% if VAR not_exists %}", line)
        node = _If(self.file, line, words[1], words[2], words[3] if len(words) == 4 else "")
        node.then, closer, _ = self.parse(("else", "endif"))
        if closer == "else":
            node.orelse, _, _ = self.parse(("endif",))
        return [node]

    def _for(self, words: list[str], inner: str, line: int) -> list[_Node]:
        if len(words) not in (5, 6) or words[2] != "in" or words[3] != "range":
            raise self.fail(f"bad {{% {inner.strip()} %}}: write "
                            "{% for I in range(a, b) %} or {% for I in range(n) %}", line)
        start, stop = (words[4], words[5]) if len(words) == 6 else ("0", words[4])
        node = _For(self.file, line, words[1], start, stop)
        node.body, _, _ = self.parse(("endfor",))
        return [node]

    def _set(self, words: list[str], inner: str, line: int) -> list[_Node]:
        return [self._named_body(_Set, words, inner, line, "value")]

    def _block(self, words: list[str], inner: str, line: int) -> list[_Node]:
        return [self._named_body(_Block, words, inner, line, "...")]

    def _named_body(self, kind: type[_Set | _Block], words: list[str], inner: str, line: int,
                    body_hint: str) -> _Set | _Block:
        """``{% set VAR %}`` / ``{% block VAR %}``: one name, then a body up to the matching
        ``{% endset %}`` / ``{% endblock %}``."""
        control = words[0]
        if len(words) != 2:
            raise self.fail(f"bad {{% {inner.strip()} %}}: write "
                            f"{{% {control} VAR %}}{body_hint}{{% end{control} %}}", line)
        node = kind(self.file, line, words[1])
        node.body, _, _ = self.parse((f"end{control}",))
        return node

    def _include(self, words: list[str], inner: str, line: int) -> list[_Node]:
        if len(words) != 2:
            raise self.fail(f"bad {{% {inner.strip()} %}}: write {{% include FILE %}}", line)
        if self.depth >= _MAX_INCLUDE_DEPTH:
            raise self.fail(f"includes nested more than {_MAX_INCLUDE_DEPTH} deep "
                            "(a file including itself?)", line)
        path = _find_file(words[1], Path(self.file).parent)
        if path is None:
            raise self.fail(f"included file {words[1]} not found (relative to "
                            f"{Path(self.file).parent})", line)
        source = _read(path, self.file, line)
        nodes, _, _ = _Parser(source, str(path), self.depth + 1).parse()
        return nodes


def _read(path: Path, file: str, line: int) -> str:
    try:
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read template file {path} ({exc})", file=file,
                        line=line) from None


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


# -- rendering -----------------------------------------------------------------------------------
class _Output:
    """Rendered text as pieces with their origin; lines get the origin of their first piece."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.origins: list[tuple[str, int]] = []
        self._current: list[str] = []
        self._origin: tuple[str, int] | None = None

    def write(self, text: str, file: str, line: int, advance_lines: bool = True) -> None:
        parts = text.split("\n")
        for i, part in enumerate(parts):
            if i > 0:
                self._end_line(file, line)
                if advance_lines:
                    line += 1
            if part:
                if self._origin is None:
                    self._origin = (file, line)
                self._current.append(part)

    def _end_line(self, file: str, line: int) -> None:
        self.lines.append("".join(self._current))
        self.origins.append(self._origin or (file, line))
        self._current, self._origin = [], None

    def finish(self) -> tuple[str, list[tuple[str, int]]]:
        if self._current:
            self.lines.append("".join(self._current))
            self.origins.append(self._origin or ("", 0))
        return "\n".join(self.lines), self.origins


def _fail(node: _Node, message: str) -> UserError:
    return UserError(f"template: {message}", file=node.file, line=node.line)


def _lookup(node: _Node, params: dict[str, str], name: str, what: str) -> str:
    if name not in params:
        known = ", ".join(sorted(params))
        raise _fail(node, f"undefined variable {name} in {what} (known: {known}); add "
                          f"{name}=... to the template section")
    return params[name]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _condition(node: _If, params: dict[str, str]) -> bool:
    if node.op == "exists":
        return node.var in params
    if node.op == "not_exists":
        return node.var not in params
    value = _lookup(node, params, node.var, "{% if %}")
    a, b = _number(value), _number(node.value)
    # Numbers compare by value (STRIDES=2.0 == 2); anything else as exact text, like N2D2.
    equal = (a == b) if a is not None and b is not None else value == node.value
    return equal if node.op == "==" else not equal


def _loop_bound(node: _For, params: dict[str, str], text: str) -> int:
    value = params.get(text, text)
    number = _number(value)
    if number is None or not number.is_integer():
        raise _fail(node, f"range bound '{value}' is not an integer")
    return int(number)


def _render(nodes: list[_Node], params: dict[str, str], out: _Output) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.write(node.text, node.file, node.line)
        elif isinstance(node, _Var):
            out.write(_lookup(node, params, node.name, "{{ }}"), node.file, node.line,
                      advance_lines=False)
        elif isinstance(node, _If):
            _render(node.then if _condition(node, params) else node.orelse, params, out)
        elif isinstance(node, _For):
            _render_for(node, params, out)
        elif isinstance(node, _Set):
            inner = _Output()
            _render(node.body, params, inner)
            params[node.var] = inner.finish()[0].strip()
        elif isinstance(node, _Block):
            _render_block(node, params, out)


def _render_for(node: _For, params: dict[str, str], out: _Output) -> None:
    if node.var in params:
        raise _fail(node, f"loop variable {node.var} already exists: rename it")
    start, stop = _loop_bound(node, params, node.start), _loop_bound(node, params, node.stop)
    for i in range(start, stop):
        params[node.var] = str(i)
        _render(node.body, params, out)
    params.pop(node.var, None)


def _render_block(node: _Block, params: dict[str, str], out: _Output) -> None:
    count = _number(_lookup(node, params, node.var, "{% block %}"))
    if count is None or not count.is_integer() or count < 0:
        raise _fail(node, f"block count {node.var}={params[node.var]} is not an integer")
    for i in range(int(count)):
        item = f"{node.var}[{i}]"
        local = dict(params)
        local["#"] = str(i)
        local.update({k[len(item):]: v for k, v in params.items() if k.startswith(item)})
        _render(node.body, local, out)


def render_template(source: str, file: str,
                    params: dict[str, str]) -> tuple[str, list[tuple[str, int]]]:
    """Render template ``source`` (read from ``file``): (text, origin (file, line) per line)."""
    nodes, _, _ = _Parser(source, file).parse()
    out = _Output()
    _render(nodes, dict(params), out)
    return out.finish()


def render_file(path: Path, params: dict[str, str], where: tuple[str, int]
                ) -> tuple[str, list[tuple[str, int]]]:
    return render_template(_read(path, *where), str(path), params)


def find_template(text: str, including_file: str, section: str, line: int) -> Path:
    """The template file of a ``[NAME@FILE]`` header, or a located UserError."""
    directory = Path(including_file).parent
    path = _find_file(text, directory)
    if path is None:
        raise UserError(f"template file {text} not found (looked next to {including_file}"
                        f"{' and in $' + _first_var(text) if _first_var(text) else ''})",
                        file=including_file, line=line, section=section)
    return path


def _first_var(text: str) -> str:
    from n2q.config.expand import unresolved_variables

    names = unresolved_variables(text)
    return names[0] if names else ""
