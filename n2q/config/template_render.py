"""Rendering a parsed template (template_nodes.py) with its parameters, within bounds.

A template is code run on the user's machine: ``{% for I in range(1000000000) %}`` or a
``{% set %}`` that doubles a value in a loop would otherwise run until memory is gone. One
:class:`_Budget` per rendering counts loop and block passes and the characters produced
(``{% set %}`` bodies included) and stops with an error located at the control that crossed
the bound. The real templates (ResNet-152 blocks, MobileNet bottlenecks) stay far below.
"""

from __future__ import annotations

from n2q.config.template_nodes import Block, For, If, Node, Set, Text, Var
from n2q.errors import UserError

MAX_LOOP_PASSES = 100_000  # loop and block passes of one rendering, nested ones included
MAX_OUTPUT_CHARS = 8_000_000  # characters one rendering may produce ({% set %} bodies too)


class _Budget:
    """What is left of the bounds of one rendering."""

    def __init__(self) -> None:
        self.passes = MAX_LOOP_PASSES
        self.chars = MAX_OUTPUT_CHARS

    def take_passes(self, node: Node, count: int, what: str) -> None:
        # checked before running: a huge range fails at once, not after minutes
        if count > self.passes:
            raise fail(node, f"{what} would run {count} passes; a template may run at most "
                             f"{MAX_LOOP_PASSES} loop passes in all: reduce the range")
        self.passes -= max(count, 0)

    def take_chars(self, node: Node, count: int) -> None:
        self.chars -= count
        if self.chars < 0:
            raise fail(node, f"the rendered text grows past {MAX_OUTPUT_CHARS} characters "
                             f"(more than {MAX_OUTPUT_CHARS} characters is not a network "
                             "description): check the loops and {% set %} of the template")


class Output:
    """Rendered text as pieces with their origin; lines get the origin of their first piece."""

    def __init__(self, budget: _Budget | None = None) -> None:
        self.lines: list[str] = []
        self.origins: list[tuple[str, int]] = []
        self._current: list[str] = []
        self._origin: tuple[str, int] | None = None
        self.budget = budget or _Budget()

    def write(self, node: Node, text: str, advance_lines: bool = True) -> None:
        self.budget.take_chars(node, len(text))
        file, line = node.file, node.line
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


def fail(node: Node, message: str) -> UserError:
    return UserError(f"template: {message}", file=node.file, line=node.line)


def _lookup(node: Node, params: dict[str, str], name: str, what: str) -> str:
    if name not in params:
        known = ", ".join(sorted(params))
        raise fail(node, f"undefined variable {name} in {what} (known: {known}); add "
                         f"{name}=... to the template section")
    return params[name]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def _condition(node: If, params: dict[str, str]) -> bool:
    if node.op == "exists":
        return node.var in params
    if node.op == "not_exists":
        return node.var not in params
    value = _lookup(node, params, node.var, "{% if %}")
    a, b = _number(value), _number(node.value)
    # Numbers compare by value (STRIDES=2.0 == 2); anything else as exact text, like N2D2.
    equal = (a == b) if a is not None and b is not None else value == node.value
    return equal if node.op == "==" else not equal


def _loop_bound(node: For, params: dict[str, str], text: str) -> int:
    value = params.get(text, text)
    number = _number(value)
    if number is None or not number.is_integer():
        raise fail(node, f"range bound '{value}' is not an integer")
    return int(number)


def render_nodes(nodes: list[Node], params: dict[str, str], out: Output) -> None:
    for node in nodes:
        if isinstance(node, Text):
            out.write(node, node.text)
        elif isinstance(node, Var):
            out.write(node, _lookup(node, params, node.name, "{{ }}"), advance_lines=False)
        elif isinstance(node, If):
            render_nodes(node.then if _condition(node, params) else node.orelse, params, out)
        elif isinstance(node, For):
            _render_for(node, params, out)
        elif isinstance(node, Set):
            inner = Output(out.budget)  # a set body counts: doubling a value in a loop
            render_nodes(node.body, params, inner)
            params[node.var] = inner.finish()[0].strip()
        elif isinstance(node, Block):
            _render_block(node, params, out)


def _render_for(node: For, params: dict[str, str], out: Output) -> None:
    if node.var in params:
        raise fail(node, f"loop variable {node.var} already exists: rename it")
    start, stop = _loop_bound(node, params, node.start), _loop_bound(node, params, node.stop)
    out.budget.take_passes(node, stop - start, f"{{% for {node.var} in range({start}, {stop}) %}}")
    for i in range(start, stop):
        params[node.var] = str(i)
        render_nodes(node.body, params, out)
    params.pop(node.var, None)


def _render_block(node: Block, params: dict[str, str], out: Output) -> None:
    count = _number(_lookup(node, params, node.var, "{% block %}"))
    if count is None or not count.is_integer() or count < 0:
        raise fail(node, f"block count {node.var}={params[node.var]} is not an integer")
    out.budget.take_passes(node, int(count), f"{{% block {node.var} %}} ({node.var}={int(count)})")
    for i in range(int(count)):
        item = f"{node.var}[{i}]"
        local = dict(params)
        local["#"] = str(i)
        local.update({k[len(item):]: v for k, v in params.items() if k.startswith(item)})
        render_nodes(node.body, local, out)
