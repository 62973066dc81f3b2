"""The public Python API (n2q/__init__.py, n2q/api/): objects checked by the INI readers,
networks from layers / INI, cells changed between phases, weights folders, learning.

References: the INI path (the same sections written to a file and built by the command's
builder), hand-computed values (fillers, solver rates), and round trips.
"""

from __future__ import annotations

import os
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import write_tiny_mnist

import n2q
from n2q.config import load_config
from n2q.net import build_network
from n2q.train.solvers import make_optimizer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tiny 10x10 MNIST-like IDX data under $N2Q_DATA; cwd = a fresh work folder."""
    write_tiny_mnist(tmp_path / "data")
    monkeypatch.setenv("N2Q_DATA", str(tmp_path / "data"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def provider(size: int = 10) -> n2q.Provider:
    return n2q.Provider(n2q.Database("MNIST_IDX", validation=0.25), (size, size), batch_size=16)


def small_net(sp: n2q.Provider, quantize: bool = False) -> n2q.Network:
    q = dict(quantizer=n2q.QWeight("SAT", apply_quantization=False)) if quantize else {}
    return n2q.Sequence([
        n2q.Conv(4, 3, name="conv1", activation="Linear", no_bias=True, **q),
        n2q.BatchNorm(name="bn1", activation="Rectifier"),
        n2q.Pool(2, stride_dims=2, name="pool1"),
        n2q.Fc(10, name="fc1", activation="Linear", **q),
        n2q.Softmax(name="softmax"),
    ], sp)


# -- the package ---------------------------------------------------------------------------------
def test_importing_n2q_does_not_import_torch() -> None:
    code = ("import sys, n2q, n2q.cli; n2q.QWeight; assert 'torch' not in sys.modules; "
            "n2q.Network; assert 'torch' in sys.modules")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_all_names_resolve_and_are_documented() -> None:
    text = pydoc.render_doc(n2q, renderer=pydoc.plaintext)
    for name in n2q.__all__:
        assert getattr(n2q, name) is not None
        assert name in text
    with pytest.raises(AttributeError):
        n2q.NoSuchThing  # noqa: B018


# -- objects checked like their INI keys ---------------------------------------------------------
INI_TEMPLATE = "[sp]\nSizeX=10\nSizeY=10\n[conv1]\nInput=sp\nType=Conv\n{keys}\n[conv1.Target]\n"


def ini_message(tmp_path: Path, keys: str) -> str:
    ini = tmp_path / "bad.ini"
    ini.write_text(INI_TEMPLATE.format(keys=keys))
    with pytest.raises(n2q.UserError) as err:
        build_network(load_config(ini), (1, 10, 10))
    return err.value.message


@pytest.mark.parametrize(("make", "keys"), [
    (lambda: n2q.Conv(4, 3, no_bia=True), "NbOutputs=4\nKernelDims=3 3\nNoBia=1"),
    (lambda: n2q.Conv(4, 3, quantizer=n2q.QWeight("SAT", range=0)),
     "NbOutputs=4\nKernelDims=3 3\nQWeight=SAT\nQWeight.Range=0"),
    (lambda: n2q.Conv(4, 3, quantizer=n2q.QWeight("SAT", apply_quantisation=False)),
     "NbOutputs=4\nKernelDims=3 3\nQWeight=SAT\nQWeight.ApplyQuantisation=0"),
    (lambda: n2q.Conv(4, 3, activation=n2q.Activation("Rectifier", leak_slop=0.1)),
     "NbOutputs=4\nKernelDims=3 3\nActivationFunction=Rectifier\n"
     "ActivationFunction.LeakSlop=0.1"),
    (lambda: n2q.Conv(4, 3, weights_filler=n2q.Filler("Xavier", variance_norm="Fan")),
     "NbOutputs=4\nKernelDims=3 3\nWeightsFiller=XavierFiller\nWeightsFiller.VarianceNorm=Fan"),
])
def test_python_objects_give_the_ini_keys_messages(tmp_path: Path, make, keys: str) -> None:
    with pytest.raises(n2q.UserError) as err:
        make()
    assert err.value.message == ini_message(tmp_path, keys)
    assert err.value.key is not None and err.value.key in keys


def test_other_objects_are_checked_at_construction() -> None:
    with pytest.raises(n2q.UserError, match=r"Solvers\.LearningRat: unknown solver key"):
        n2q.Solver(learning_rat=0.1)
    with pytest.raises(n2q.UserError, match="unknown quantizer 'SATT' .did you mean SAT"):
        n2q.QAct("SATT")
    with pytest.raises(n2q.UserError, match="Validatio: unknown key"):
        n2q.Database("MNIST_IDX", validatio=0.1)
    with pytest.raises(n2q.UserError, match="Widht"):
        n2q.Transformation("Rescale", widht=3, height=3)
    with pytest.raises(n2q.UserError, match="BatchSize"):
        n2q.Provider(n2q.Database("MNIST_IDX"), (10, 10), batch_size=0)
    with pytest.raises(n2q.UserError, match="unknown layer type 'Convv'"):
        n2q.Layer("Convv")
    assert n2q.QWeight.methods() == sorted(__import__("n2q.quant").quant.WEIGHT_QUANTIZERS)


# -- networks ------------------------------------------------------------------------------------
def test_layers_build_what_their_ini_text_builds(data: Path) -> None:
    sp = provider()
    n2q.seed(7)
    net = small_net(sp, quantize=True)
    assert [c.name for c in net] == ["conv1", "bn1", "pool1", "fc1", "softmax"]
    assert net["conv1"].type == "Conv" and "conv1" in net and len(net) == 5
    with pytest.raises(KeyError, match="did you mean conv1"):
        net["conv"]
    (data / "same.ini").write_text(net.to_ini())
    n2q.seed(7)
    again = n2q.Network.from_ini(data / "same.ini")
    assert again.summary() == net.summary()
    for key, value in net.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    x = next(iter(again.provider.loader("Test")))[0]
    assert net.output(x).shape == (len(x), 10)
    torch.testing.assert_close(net(x)["softmax"], again(x)["softmax"], rtol=0, atol=0)


def test_quantizers_change_between_phases(data: Path) -> None:
    net = small_net(provider())
    conv = net["conv1"]
    n2q.set_quantizer(conv, weight=n2q.QWeight("SAT", apply_quantization=False))
    n2q.set_quantizer(net["bn1"], act=n2q.QAct("SAT", alpha=6.0, range=15))
    n2q.set_activation(net["bn1"], "Linear")
    with torch.no_grad():
        net["bn1"].act_quantizer.alpha.fill_(3.25)       # as if learned
    assert n2q.quantizer_settings(conv) == n2q.QWeight("SAT", apply_quantization=False)
    n2q.change_quantizer(conv, apply_quantization=True, range=15)
    n2q.change_quantizer(net["bn1"], "act", range=3)
    assert conv.weight_quantizer.range == 15 and conv.weight_quantizer.apply_quantization
    assert net["bn1"].act_quantizer.range == 3
    assert net["bn1"].act_quantizer.alpha.item() == 3.25      # learned state kept
    w = conv.quantized_weight()
    assert len(torch.unique(w)) <= 16
    assert "QWeight.Range=15" in net.to_ini() and "QAct.Range=3" in net.to_ini()
    with pytest.raises(n2q.UserError, match="Conv and Fc"):
        n2q.set_quantizer(net["pool1"], weight=n2q.QWeight("SAT"))
    n2q.set_quantizer(conv, weight=False)
    assert conv.weight_quantizer is None and n2q.quantizer_settings(conv) is None


def test_per_cell_solver_and_filler(data: Path) -> None:
    net = small_net(provider())
    n2q.set_solver(net["fc1"], learning_rate=0.125, momentum=0.5)
    n2q.set_solver_parameter(net["conv1"], "learning_rate", 0.25)
    n2q.set_filler(net["fc1"], weights=n2q.Filler("Constant", value=0.5),
                   bias=n2q.Filler("Constant", value=-1.0))
    assert torch.all(net["fc1"].weight == 0.5) and torch.all(net["fc1"].bias == -1.0)
    opt = make_optimizer(net, 16)
    groups = {g["name"]: spec for g, spec in zip(opt.param_groups, opt.specs, strict=True)}
    assert groups["fc1/weights"].schedule.learning_rate == 0.125
    assert groups["fc1/weights"].momentum == 0.5
    assert groups["conv1/weights"].schedule.learning_rate == 0.25
    assert groups["bn1/scales"].schedule.learning_rate == 0.01      # SGD's default
    with pytest.raises(n2q.UserError, match="LearningRat"):
        n2q.set_solver_parameter(net["conv1"], "learning_rat", 0.1)


def test_weights_folders_in_and_out(data: Path, capsys: pytest.CaptureFixture) -> None:
    sp = provider()
    n2q.seed(1)
    net = small_net(sp, quantize=True)
    net.save_weights(data / "w", plots=False)
    n2q.seed(2)
    other = small_net(sp, quantize=True)
    assert not torch.equal(other["conv1"].weight, net["conv1"].weight)
    other.load_weights(data / "w")
    assert torch.equal(other["conv1"].weight, net["conv1"].weight)
    (data / "w" / "fc1_weights.syntxt").unlink()
    result = other.load_weights(data / "w", ignore_missing=True)
    assert result.missing and "fc1" in capsys.readouterr().err
    with pytest.raises(n2q.UserError):
        other.load_weights(data / "w", ignore_missing=False)
    with pytest.raises(n2q.UserError, match="no such weights folder"):
        other.load_weights(data / "nothing")


def test_learn_helper_and_plain_pytorch_loop(data: Path) -> None:
    sp = provider()
    n2q.seed(3)
    net = small_net(sp)
    best = n2q.learn(net, epochs=1)
    assert best == Path("weights_validation") and (data / "weights_validation").is_dir()
    assert 0 <= n2q.test(net)["softmax.Target"] <= 1
    with pytest.raises(n2q.UserError, match="give one of them"):
        n2q.learn(net)
    # the plain PyTorch way: the network is an nn.Module, the provider gives batches
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = next(iter(sp.loader("Learn")))
    losses = []
    for _ in range(10):
        loss = F.cross_entropy(net.output(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_on_the_fly_transformations_are_redrawn_each_epoch(data: Path) -> None:
    sp = provider(size=8)
    sp.add_transformation(n2q.Transformation("Rescale", width=8, height=8))
    sp.add_on_the_fly_transformation(n2q.Transformation(
        "Flip", random_horizontal_flip=True, apply_to="LearnOnly"))
    n2q.seed(4)
    x0 = next(iter(sp.loader("Learn", shuffle=False, epoch=0)))[0]
    x1 = next(iter(sp.loader("Learn", shuffle=False, epoch=1)))[0]
    assert x0.shape == (16, 1, 8, 8)
    flipped = [not torch.equal(a, b) for a, b in zip(x0, x1, strict=True)]
    assert any(flipped)
    for a, b, f in zip(x0, x1, flipped, strict=True):   # a redraw is the mirror image
        assert torch.equal(a, b) or (f and torch.equal(a, b.flip(-1)))
    t0 = next(iter(sp.loader("Test", epoch=0)))[0]
    assert torch.equal(t0, next(iter(sp.loader("Test", epoch=1)))[0])   # LearnOnly
    assert "OnTheFlyTransformation-2" in small_net(sp).to_ini()


def test_fuse_and_draw(data: Path) -> None:
    sp = provider()
    n2q.seed(5)
    net = small_net(sp)
    n2q.set_activation(net["bn1"], "Linear")
    n2q.set_quantizer(net["bn1"], act=n2q.QAct("SAT", alpha=2.0, range=15))
    for name in ("conv1", "fc1"):
        n2q.set_quantizer(net[name], weight=n2q.QWeight("SAT", range=15))
    n2q.learn(net, stimuli=32, log=32)
    fused = net.fuse(data / "weights_quantized")
    x = next(iter(sp.loader("Test")))[0]
    net.eval()
    same = (fused(x)["softmax"].argmax(1) == net(x)["softmax"].argmax(1)).float().mean()
    assert same >= 0.9
    assert (data / "weights_quantized" / "conv1_weights.syntxt").is_file()
    files = net.draw_graph(data / "graph", model=fused)
    assert (data / "graph.dot").is_file() and files


def test_export_onnx(data: Path) -> None:
    import onnx

    sp = provider()
    n2q.seed(6)
    net = small_net(sp)
    model = onnx.load(str(net.export_onnx(data / "float", name="small")))
    assert model.graph.node and not any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    for name in ("conv1", "fc1"):
        n2q.set_quantizer(net[name], weight=n2q.QWeight("LSQ", range=255))
    n2q.set_activation(net["bn1"], "Linear")
    n2q.set_quantizer(net["bn1"], act=n2q.QAct("LSQ", range=255))
    n2q.learn(net, stimuli=32, log=32)         # LSQ step sizes set by the first batches
    path = net.export_onnx(data / "qdq", name="small")
    assert path == data / "qdq" / "export_ONNX" / "small.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
