"""Graph drawing (spec/cli.md): <ini>.dot always, <ini>.png by Graphviz or matplotlib."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from PIL import Image
from torch import nn

from n2q.io import graph as graph_module
from n2q.io.graph import draw_graph, layers
from n2q.net.batchnorm import BatchNormCell
from n2q.net.conv import ConvCell
from n2q.net.pool import PoolCell
from n2q.quant.sat import SATAct, SATWeight


class Sum(nn.Module):
    """Stands for an ElemWise cell: only the attributes the drawing reads."""

    type = "ElemWise"

    def __init__(self, name: str, inputs: list[str], shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.name, self.inputs, self.in_shape, self.out_shape = name, inputs, shape, shape


class GraphNet(nn.Module):
    def __init__(self, *cells: nn.Module) -> None:
        super().__init__()
        self.cells = nn.ModuleDict({cell.name: cell for cell in cells})
        self.inputs = {cell.name: list(cell.inputs) for cell in cells}


def residual_net() -> GraphNet:
    conv1 = ConvCell("conv1", ["sp"], (3, 8, 8), 4, (3, 3), padding=(1, 1))
    bn1 = BatchNormCell("bn1", ["conv1"], (4, 8, 8))
    bn1.act_quantizer = SATAct(range=15)
    conv2 = ConvCell("conv2", ["bn1"], (4, 8, 8), 4, (3, 3), padding=(1, 1), stride=(1, 1))
    conv2.weight_quantizer = SATWeight(range=15)
    add = Sum("add", ["conv2", "conv1"], (4, 8, 8))
    pool = PoolCell("pool", ["add"], (4, 8, 8), (2, 2), "Max", stride=(2, 2))
    return GraphNet(conv1, bn1, conv2, add, pool)


def no_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)


def test_dot_lists_every_layer_and_edge(tmp_path: Path, monkeypatch) -> None:
    no_graphviz(monkeypatch)
    written = draw_graph(residual_net(), tmp_path / "net.ini")
    assert [p.name for p in written] == ["net.ini.dot", "net.ini.png"]
    dot = (tmp_path / "net.ini.dot").read_text()
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)";', dot))
    assert edges == {("sp", "conv1"), ("conv1", "bn1"), ("bn1", "conv2"), ("conv2", "add"),
                     ("conv1", "add"), ("add", "pool")}
    label = re.search(r'"conv2" \[label="([^"]*)"', dot).group(1).split("\\n")
    assert label == ["Conv conv2", "4x8x8", "kernel 3 pad 1", "QW: SAT R=15"]
    assert "QA: SAT R=15" in re.search(r'"bn1" \[label="([^"]*)"', dot).group(1)
    assert "Max 2 /2" in re.search(r'"pool" \[label="([^"]*)"', dot).group(1)
    assert 'label="net.ini"' in dot


def test_matplotlib_png_without_graphviz(tmp_path: Path, monkeypatch) -> None:
    no_graphviz(monkeypatch)
    draw_graph(residual_net(), tmp_path / "net.ini")
    with Image.open(tmp_path / "net.ini.png") as image:
        width, height = image.size
    assert height > width  # vertical layered layout: sp, conv1, bn1, conv2, add, pool


def test_layers_put_a_node_below_its_deepest_input() -> None:
    nodes = graph_module.graph_nodes(residual_net())
    rows = [[node.name for node in row] for row in layers(nodes)]
    assert rows == [["sp"], ["conv1"], ["bn1"], ["conv2"], ["add"], ["pool"]]


def test_graphviz_renders_png_and_svg_when_installed(tmp_path: Path, monkeypatch) -> None:
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    # a stand-in for Graphviz: writes its command line into the requested output file
    fake.write_text('#!/bin/sh\nfor a; do out="$a"; done\necho "$@" > "$out"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: str(fake))
    written = draw_graph(residual_net(), tmp_path / "net.ini")
    assert [p.name for p in written] == ["net.ini.dot", "net.ini.png", "net.ini.svg"]
    assert (tmp_path / "net.ini.png").read_text().startswith("-Tpng ")
    assert (tmp_path / "net.ini.svg").read_text().startswith("-Tsvg ")


def test_resnet50_sized_graph_stays_a_readable_column(tmp_path: Path, monkeypatch) -> None:
    """~170 layers with a skip edge every 3: one column, boxes at a legible scale."""
    no_graphviz(monkeypatch)
    cells: list[nn.Module] = [Sum("c0", ["sp"], (64, 56, 56))]
    for i in range(1, 170):
        inputs = [f"c{i - 1}"] + ([f"c{i - 3}"] if i % 3 == 0 and i >= 3 else [])
        cells.append(Sum(f"c{i}", inputs, (64, 56, 56)))
    draw_graph(GraphNet(*cells), tmp_path / "big.ini")
    with Image.open(tmp_path / "big.ini.png") as image:
        width, height = image.size
    rows = len(layers(graph_module.graph_nodes(GraphNet(*cells))))
    assert rows == 171
    assert height / rows >= 60  # two 7 pt lines (~10 px each at 100 dpi) plus spacing
    assert height < 65536 and width < 2000
