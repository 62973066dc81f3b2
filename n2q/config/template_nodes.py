"""The syntax tree of N2D2's template language (parsed by template.py, rendered by
template_render.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Node:
    file: str
    line: int


@dataclass
class Text(Node):
    text: str = ""


@dataclass
class Var(Node):
    name: str = ""


@dataclass
class If(Node):
    var: str = ""
    op: str = ""
    value: str = ""
    then: list[Node] = field(default_factory=list)
    orelse: list[Node] = field(default_factory=list)


@dataclass
class For(Node):
    var: str = ""
    start: str = "0"
    stop: str = ""
    body: list[Node] = field(default_factory=list)


@dataclass
class Set(Node):
    var: str = ""
    body: list[Node] = field(default_factory=list)


@dataclass
class Block(Node):
    var: str = ""
    body: list[Node] = field(default_factory=list)
