"""Float ONNX export of real n2q networks: LeNet.ini, models/cifar-10.ini and the zoo-shaped
ResNet-18 v1 of the ONNX tests.

Each export is run in onnxruntime here (independently of the exporter's own check): the logits
(the input of the Softmax, or the ResNet's Gemm output) within 1e-4 of n2q's, and the file
re-imported by n2q's own ONNX import (an INI with an [onnx] section) gives the same classes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import random_stimuli, resnet18v1, sat_ini, train_briefly
from onnx import TensorProto
from onnx import helper as oh

from n2q.config import load_config
from n2q.errors import UserError
from n2q.export import export_network
from n2q.net import build_network

MODELS = Path(__file__).resolve().parents[1] / "models"
ZOO_SMALL = dict(size=32, classes=10, widths=(8, 8, 16, 16))


def stimuli(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def settle_batchnorm(net, shape: tuple[int, ...]) -> None:
    """A few training-mode passes so that the BatchNorm running statistics are not 0/1."""
    net.train()
    with torch.no_grad():
        for i in range(3):
            net(stimuli(16, shape, 100 + i))
    net.eval()


def run_onnx(path: Path, x: torch.Tensor, extra: list[str]) -> dict[str, np.ndarray]:
    """onnxruntime on the exported file, with the tensors ``extra`` added as outputs."""
    model = onnx.load(str(path))
    for name in extra:
        model.graph.output.append(oh.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: x.numpy()}),
                    strict=True))


def reimport(path: Path, tmp_path: Path, shape: tuple[int, ...], target: str):
    """n2q's ONNX import of the exported file, built from an INI as a user writes it."""
    c, h, w = shape
    ini = tmp_path / "reimport.ini"
    ini.write_text(f"[sp]\nSizeX={w}\nSizeY={h}\nNbChannels={c}\nBatchSize=8\n\n"
                   f"[onnx]\nInput=sp\nType=ONNX\nFile={path}\n\n[{target}.Target]\n")
    return build_network(load_config(ini), shape).eval()


def check_float_export(net, tmp_path: Path, shape: tuple[int, ...], name: str,
                       logits: str, target: str) -> None:
    x = stimuli(24, shape, 7)
    result = export_network(net, "ONNX", batch=stimuli(8, shape, 1), folder=tmp_path,
                            name=name)
    assert not result.quantized and result.model == tmp_path / "export_ONNX" / f"{name}.onnx"
    assert {p.name for p in result.folder.iterdir()} == {f"{name}.onnx", "report.txt"}
    with torch.no_grad():
        ref = net.forward_all(x)
    outs = run_onnx(result.model, x, [logits] if logits != target else [])
    mine = ref[logits].flatten(1).numpy()
    assert np.abs(outs[logits] - mine).max() < 1e-4
    assert np.abs(outs[target].reshape(len(x), -1) - ref[target].flatten(1).numpy()).max() \
        < 1e-4
    again = reimport(result.model, tmp_path, shape, target)
    with torch.no_grad():
        classes = again(x)[target].flatten(1).argmax(1)
    assert torch.equal(classes, ref[target].flatten(1).argmax(1))
    assert set(again.cells) >= {c for c, cell in net.cells.items() if cell.type != "Dropout"}
    report = (result.folder / "report.txt").read_text()
    assert "float, opset 13" in report and "onnx.checker (full check): passed" in report


def test_lenet_float_export(tmp_path: Path) -> None:
    net = build_network(load_config(MODELS / "LeNet.ini"), (1, 32, 32), quantize=False)
    settle_batchnorm(net, (1, 32, 32))
    check_float_export(net, tmp_path, (1, 32, 32), "LeNet", "fc2", "softmax")


def test_lenet_with_its_clamp_phase_quantizers_is_refused_naming_the_cell(tmp_path) -> None:
    net = build_network(load_config(MODELS / "LeNet.ini"), (1, 32, 32)).eval()
    with pytest.raises(UserError, match=r"-export ONNX: cell conv1: its weight quantizer "
                       r"\(SAT clamp\) gives no integer grid"):
        export_network(net, "ONNX", batch=stimuli(4, (1, 32, 32)), folder=tmp_path)
    assert not (tmp_path / "export_ONNX").exists()


@pytest.mark.slow
def test_cifar10_float_export(tmp_path: Path) -> None:
    net = build_network(load_config(MODELS / "cifar-10.ini"), (3, 32, 32), quantize=False)
    settle_batchnorm(net, (3, 32, 32))
    softmax = next(t.cell for t in net.targets)
    logits = net.inputs[softmax][0]
    check_float_export(net, tmp_path, (3, 32, 32), "cifar-10", logits, softmax)


@pytest.mark.slow
def test_zoo_resnet18_float_export_round_trip(tmp_path: Path) -> None:
    onnx.save(resnet18v1(**ZOO_SMALL), str(tmp_path / "resnet18v1.onnx"))
    out = "resnetv15_dense0_fwd"
    net = reimport(tmp_path / "resnet18v1.onnx", tmp_path, (3, 32, 32), out)
    x = stimuli(8, (3, 32, 32), 5)
    zoo = ort.InferenceSession(str(tmp_path / "resnet18v1.onnx"))
    with torch.no_grad():   # the imported network is the zoo graph (the zoo file: batch 1)
        for i in range(len(x)):
            assert np.abs(zoo.run(None, {"data": x[i:i + 1].numpy()})[0]
                          - net(x[i:i + 1])[out].flatten(1).numpy()).max() < 1e-4
    export_dir = tmp_path / "out"
    check_float_export(copy.deepcopy(net), export_dir, (3, 32, 32), "resnet18", out, out)
    model = onnx.load(str(export_dir / "export_ONNX" / "resnet18.onnx"))
    names = {n.output[0] for n in model.graph.node}
    # N2D2's naming kept: each cell is its node's first output
    assert {"resnetv15_conv0_fwd", "resnetv15_stage4_conv4_fwd", out} <= names
    assert sum(n.op_type == "Add" for n in model.graph.node) == 8


@pytest.mark.slow
def test_zoo_resnet18_sat_w4a4_qdq_export(tmp_path: Path) -> None:
    """The seed's ResNet-18 recipe (SAT W4A4 through ReluQ_def on every Relu, 8-bit first and
    last layers) on the zoo-shaped graph: the QDQ export passes its own check (layer by layer
    within one level) and onnxruntime gives n2q's classes on other stimuli."""
    net = build_network(load_config(sat_ini(tmp_path, True)), (3, 64, 64))
    target = net.targets[0].cell
    train_briefly(net, (3, 64, 64), target, 3, steps=2, batch=8, lr=0.01, first_seed=0)
    result = export_network(net, "ONNX", batch=random_stimuli(16, 9, (3, 64, 64)),
                            folder=tmp_path, name="resnet18")
    assert result.quantized
    model = onnx.load(str(result.model))
    ops = [n.op_type for n in model.graph.node]
    assert model.opset_import[0].version == 13
    assert ops.count("QuantizeLinear") == 17            # one per ReluQ (17 ReLUs)
    adds = [n.output[0] for n in model.graph.node if n.op_type == "Add"]
    readers = {i for n in model.graph.node if n.op_type == "QuantizeLinear" for i in n.input}
    assert len(adds) == 8 and set(adds) <= readers       # every residual sum is quantized
    x = random_stimuli(32, 11, (3, 64, 64))
    got = ort.InferenceSession(str(result.model)).run(None, {"sp": x.numpy()})[0]
    with torch.no_grad():
        want = net.eval()(x)[target].flatten(1)
    assert np.array_equal(got.reshape(len(x), -1).argmax(1), want.argmax(1).numpy())
