"""Drawing of the network graph: ``<ini>.dot`` always, ``<ini>.png`` (and ``.svg``) by Graphviz
when ``dot`` is installed, else a matplotlib drawing of the layered graph.

Each box shows the layer's type, name, output size (C x H x W), kernel / stride / padding,
activation and quantizers, as N2D2's drawing does.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INPUT_NAMES = ("sp", "env")
_COLOURS = {"Conv": "#cfe2f3", "Fc": "#f4cccc", "Pool": "#d9ead3", "BatchNorm": "#fff2cc",
            "ElemWise": "#ead1dc", "Softmax": "#d9d2e9"}
_DEFAULT_COLOUR = "#eeeeee"


@dataclass
class Node:
    name: str
    type: str
    lines: list[str]  # label lines, first = "<type> <name>"
    inputs: list[str]
    quantized: bool


# ---------------------------------------------------------------------------------------------
# What to show


def _pair(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = [str(v) for v in value]
        return items[0] if len(set(items)) == 1 else "x".join(items)
    return str(value)


def _shape(shape: Any) -> str:
    return "x".join(str(int(n)) for n in shape) if shape is not None else "?"


def describe_quantizer(quantizer: Any) -> str:
    """``SAT R=15``: the quantizer's own ``describe()`` if it has one, else its class."""
    describe = getattr(quantizer, "describe", None)
    if callable(describe):
        return str(describe())
    name = getattr(quantizer, "NAME", None) or type(quantizer).__name__
    levels = getattr(quantizer, "range", None)
    return f"{name} R={levels}" if isinstance(levels, int) else str(name)


def _geometry(cell: Any) -> str | None:
    kernel = getattr(cell, "kernel", None) or getattr(cell, "kernel_size", None)
    weight = getattr(cell, "weight", None)
    if kernel is None and cell.type == "Conv" and weight is not None and weight.dim() == 4:
        kernel = tuple(weight.shape[2:])  # modules without a `kernel` (fused layers)
    if cell.type == "Conv" and kernel is not None:
        text = f"kernel {_pair(kernel)}"
    elif cell.type == "Pool" and kernel is not None:
        text = f"{getattr(cell, 'pooling', 'Pool')} {_pair(kernel)}"
    else:
        return None
    stride, padding = getattr(cell, "stride", 1), getattr(cell, "padding", 0)
    if _pair(stride) != "1":
        text += f" /{_pair(stride)}"
    if _pair(padding) != "0":
        text += f" pad {_pair(padding)}"
    if int(getattr(cell, "groups", 1) or 1) > 1:
        text += f" groups {cell.groups}"
    if getattr(cell, "mask", None) is not None:
        text += " sparse map"  # a Mapping matrix that is not a group pattern (LeNet's conv2)
    return text


def _activation(cell: Any) -> str | None:
    activation = getattr(cell, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "name", None) or type(activation).__name__
    return None if name in ("Identity", "Linear") else f"act {name}"


def node_of(name: str, cell: Any, inputs: list[str]) -> Node:
    lines = [f"{cell.type} {name}", _shape(getattr(cell, "out_shape", None))]
    lines += [text for text in (_geometry(cell), _activation(cell)) if text]
    weight_q = getattr(cell, "weight_quantizer", None)
    act_q = getattr(cell, "act_quantizer", None)
    if weight_q is not None:
        lines.append(f"QW: {describe_quantizer(weight_q)}")
    if act_q is not None:
        lines.append(f"QA: {describe_quantizer(act_q)}")
    return Node(name, cell.type, lines, inputs, weight_q is not None or act_q is not None)


def graph_nodes(net: Any) -> list[Node]:
    """The network's nodes in execution order, plus one node per provider input used."""
    nodes: list[Node] = []
    seen_inputs: set[str] = set()
    for name, cell in net.cells.items():
        inputs = list(net.inputs[name])
        for source in inputs:
            if source in INPUT_NAMES and source not in seen_inputs:
                seen_inputs.add(source)
                # the provider's shape; a consumer's in_shape only if the net does not say
                shape = getattr(net, "input_shape", None) or getattr(cell, "in_shape", None)
                nodes.append(Node(source, "Input", [f"Input {source}", _shape(shape)], [], False))
        nodes.append(node_of(name, cell, inputs))
    return nodes


# ---------------------------------------------------------------------------------------------
# Graphviz text


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_text(nodes: list[Node], title: str) -> str:
    out = ["digraph network_graph {", f"  label={_quote(title)};", "  labelloc=t;",
           "  node [shape=rect, style=filled, fontname=Helvetica, fontsize=10];"]
    for node in nodes:
        colour = _COLOURS.get(node.type, _DEFAULT_COLOUR)
        label = "\\n".join(line.replace("\\", "/").replace('"', "'") for line in node.lines)
        shape = ", shape=ellipse" if node.type == "Input" else ""
        border = ", penwidth=2.5" if node.quantized else ""
        out.append(f'  {_quote(node.name)} [label="{label}", fillcolor="{colour}"{shape}{border}];')
    for node in nodes:
        for source in node.inputs:
            out.append(f"  {_quote(source)} -> {_quote(node.name)};")
    out.append("}")
    return "\n".join(out) + "\n"


def draw_graph(net: Any, path_without_ext: str | Path, *, title: str | None = None) -> list[Path]:
    """Write ``<path>.dot`` and ``<path>.png`` (+ ``.svg`` with Graphviz); returns the files."""
    base = Path(path_without_ext)
    nodes = graph_nodes(net)
    dot_path = base.with_name(base.name + ".dot")
    dot_path.write_text(dot_text(nodes, title or base.name), encoding="utf-8")
    written = [dot_path]
    png_path = base.with_name(base.name + ".png")
    graphviz = shutil.which("dot")
    if graphviz and _run_graphviz(graphviz, dot_path, base):
        written += [png_path, base.with_name(base.name + ".svg")]
    else:
        draw_layers(nodes, png_path, title or base.name)
        written.append(png_path)
    return written


def _run_graphviz(graphviz: str, dot_path: Path, base: Path) -> bool:
    """Render PNG and SVG; False (fall back to matplotlib) if Graphviz fails or hangs."""
    try:
        for fmt in ("png", "svg"):
            subprocess.run([graphviz, f"-T{fmt}", str(dot_path), "-o",
                            str(base.with_name(f"{base.name}.{fmt}"))],
                           check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# matplotlib fallback: layered drawing, top to bottom

BOX_WIDTH = 2.6  # inches (the axes' data units are inches)
LINE_HEIGHT = 0.16
LANE = 0.9  # room on the right of the boxes for edges that skip rows


def layers(nodes: list[Node]) -> list[list[Node]]:
    """Rows of the drawing: a node sits one row below its deepest input; within a row, nodes
    are ordered by the mean column of their inputs (fewer crossings)."""
    depth: dict[str, int] = {}
    for node in nodes:  # nodes are in execution order: inputs come first
        depth[node.name] = 1 + max((depth.get(i, 0) for i in node.inputs), default=-1)
    rows: list[list[Node]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in nodes:
        rows[depth[node.name]].append(node)
    column: dict[str, float] = {}
    for row in rows:
        row.sort(key=lambda n: sum(column.get(i, 0.0) for i in n.inputs) / max(len(n.inputs), 1))
        for index, node in enumerate(row):
            column[node.name] = index - (len(row) - 1) / 2
    return rows


def draw_layers(nodes: list[Node], path: Path, title: str) -> None:
    """Boxes row by row, top to bottom; edges between consecutive rows are straight arrows,
    edges that skip rows (residual connections) run in a lane on the right of the boxes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    rows = layers(nodes)
    widest = max((len(row) for row in rows), default=1)
    row_height = max((len(n.lines) for n in nodes), default=1) * LINE_HEIGHT + 0.45
    width = max(widest * (BOX_WIDTH + 0.4) + 2 * LANE, 4.0)
    height = len(rows) * row_height + 0.6
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(-width / 2, width / 2)
    axes.set_ylim(-height, 0)
    axes.axis("off")
    axes.text(0, -0.3, title, ha="center", va="center", fontsize=11, weight="bold")
    place: dict[str, tuple[float, float, float, int]] = {}  # name -> (x, y, half height, row)
    for index, row in enumerate(rows):
        y = -0.6 - (index + 0.5) * row_height
        for position, node in enumerate(row):
            x = (position - (len(row) - 1) / 2) * (BOX_WIDTH + 0.4) - LANE / 2
            half = (len(node.lines) * LINE_HEIGHT + 0.12) / 2
            place[node.name] = (x, y, half, index)
            axes.add_patch(FancyBboxPatch(
                (x - BOX_WIDTH / 2, y - half), BOX_WIDTH, 2 * half,
                boxstyle="round,pad=0.02", facecolor=_COLOURS.get(node.type, _DEFAULT_COLOUR),
                edgecolor="black", linewidth=2.0 if node.quantized else 0.8))
            axes.text(x, y, "\n".join(node.lines), ha="center", va="center", fontsize=7,
                      linespacing=1.1)
    for node in nodes:
        for source in node.inputs:
            if source in place:
                _edge(axes, place[source], place[node.name])
    figure.savefig(str(path), dpi=100)  # 7 pt text stays legible


def _edge(axes: Any, source: tuple[float, float, float, int],
          target: tuple[float, float, float, int]) -> None:
    x0, y0, h0, row0 = source
    x1, y1, h1, row1 = target
    style = {"arrowstyle": "->", "lw": 0.8, "color": "0.3"}
    if row1 - row0 <= 1:
        axes.annotate("", xy=(x1, y1 + h1), xytext=(x0, y0 - h0),
                      arrowprops={**style, "connectionstyle": "arc3"})
        return
    # out of the source's right side, down the lane, into the target's right side; longer
    # skips take a wider lane so that nested ones stay apart (arms in points)
    arm = 12 + 6 * min(row1 - row0, 8)
    axes.annotate("", xy=(x1 + BOX_WIDTH / 2, y1), xytext=(x0 + BOX_WIDTH / 2, y0),
                  arrowprops={**style, "connectionstyle":
                              f"arc,angleA=0,angleB=0,armA={arm},armB={arm},rad=4"})
