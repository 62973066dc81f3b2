"""Interoperability with a weights folder written by N2D2 itself (reference/n2d2-run-LeNet):
LeNet with conv2's sparse mapping (75/100/150 values per line), NoBias=1."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from n2q.config import load_config
from n2q.io import graph as graph_module
from n2q.io.weights import load_weights, save_weights
from n2q.net import build_network

CELLS = ("conv1", "conv2", "conv3", "fc1", "fc2")


def lenet(reference: Path):
    cfg = load_config(reference / "n2d2-models" / "LeNet.ini")
    return build_network(cfg, (1, 32, 32))


def rows(path: Path) -> list[np.ndarray]:
    return [np.array(line.split(), dtype=np.float32) for line in path.read_text().splitlines()]


def test_n2d2_folder_loads_and_saves_back_the_same_numbers(reference: Path,
                                                           tmp_path: Path) -> None:
    n2d2 = reference / "n2d2-run-LeNet" / "weights_validation"
    net = lenet(reference)
    result = load_weights(net, n2d2)
    assert sorted(result.loaded) == [f"{cell}_weights.syntxt" for cell in CELLS]
    assert result.missing == []
    conv2 = net.cells["conv2"]
    # the first value of N2D2's conv2 file is output 0, first connected channel, y=0 x=0
    assert conv2.weight[0, 0, 0, 0].item() == np.float32(rows(n2d2 / "conv2_weights.syntxt")[0][0])
    assert torch.count_nonzero(conv2.weight * ~conv2.mask) == 0  # unconnected weights stay 0
    save_weights(net, tmp_path / "w")
    for cell in CELLS:
        ours = rows(tmp_path / "w" / f"{cell}_weights.syntxt")
        theirs = rows(n2d2 / f"{cell}_weights.syntxt")
        assert [len(r) for r in ours] == [len(r) for r in theirs]
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)), cell
    assert [len(r) for r in rows(tmp_path / "w" / "conv2_weights.syntxt")] == (
        [75] * 6 + [100] * 9 + [150])
    assert not list((tmp_path / "w").glob("*_biases.syntxt"))  # NoBias=1


def test_graph_has_n2d2_edges(reference: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(graph_module.shutil, "which", lambda name: None)
    graph_module.draw_graph(lenet(reference), tmp_path / "LeNet.ini")

    def edges(text: str) -> set[tuple[str, str]]:
        return {(a.strip('"'), b.strip('"'))
                for a, b in re.findall(r'^\s*("?[\w.]+"?) -> ("?[\w.]+"?);', text, re.M)}

    ours = edges((tmp_path / "LeNet.ini.dot").read_text())
    theirs = edges((reference / "n2d2-run-LeNet" / "LeNet.ini.dot").read_text())
    assert ours - {("sp", "conv1")} == theirs
    conv2 = re.search(r'"conv2" \[label="([^"]*)"', (tmp_path / "LeNet.ini.dot").read_text())
    assert conv2.group(1).split("\\n")[:4] == [
        "Conv conv2", "16x10x10", "kernel 5 sparse map", "act Rectifier"]
    assert (tmp_path / "LeNet.ini.png").stat().st_size > 0


def test_n2d2_weights_score_n2d2_accuracy(reference: Path, test_data: Path, monkeypatch) -> None:
    """N2D2 scored 97.25% on the 2000 test digits with these weights (README of the run)."""
    from n2q.data import make_provider

    monkeypatch.setenv("N2Q_DATA", str(test_data))
    cfg = load_config(reference / "n2d2-models" / "LeNet.ini")
    provider = make_provider(cfg, seed=1)
    net = build_network(cfg, provider.size)
    load_weights(net, reference / "n2d2-run-LeNet" / "weights_validation")
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for x, label in provider.loader("Test", shuffle=False):
            predicted = net(x)["softmax"].flatten(1).argmax(1)
            correct += int((predicted == label).sum())
            total += len(label)
    assert total == 2000
    assert correct / total == pytest.approx(0.9725, abs=0.003)  # resizing differs slightly
