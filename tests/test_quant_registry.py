"""Registry-wide properties (every registered quantizer), INI reading and attach_quantizers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from n2q.config import load_config
from n2q.errors import UserError
from n2q.io.state import load_state, save_state
from n2q.io.weights import load_weights, quantized_weight, save_weights
from n2q.net.graph import build_network
from n2q.quant import (
    ACT_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    attach_quantizers,
    build_act_quantizer,
    build_weight_quantizer,
)
from n2q.quant.protocol import RunPlan
from n2q.quant.protocol import quantizers as protocol_quantizers

ALL = [("QWeight", n) for n in WEIGHT_QUANTIZERS] + [("QAct", n) for n in ACT_QUANTIZERS]

# Every registered quantizer is built by the INI path on real cells whose shapes differ: a Conv
# [5, 3, 3, 3] and an Fc [4, 5*6*6] for QWeight; a Conv output [B, 5, 6, 6] and an Fc output
# [B, 4, 1, 1] for QAct. A method that needs keys to build a tiny instance lists them in its
# class attribute TEST_KEYS (INI sub-key -> value; Range=15 otherwise).
NET = """
[sp]
SizeX=8
SizeY=8
NbChannels=3
BatchSize=4

[conv1]
Input=sp
Type=Conv
KernelDims=3 3
NbOutputs=5
ActivationFunction=Rectifier
{keys}

[fc1]
Input=conv1
Type=Fc
NbOutputs=4
ActivationFunction=Rectifier
{keys}

[fc2]
Input=fc1
Type=Fc
NbOutputs=3
ActivationFunction=Linear

[softmax]
Input=fc2
Type=Softmax
NbOutputs=3
WithLoss=1

[softmax.Target]
"""
QUANTIZED = ("conv1", "fc1")


def _net(tmp_path: Path, family: str, name: str, seed: int = 0):
    registry = WEIGHT_QUANTIZERS if family == "QWeight" else ACT_QUANTIZERS
    sub = {"Range": "15", **getattr(registry[name], "TEST_KEYS", {})}
    keys = "\n".join([f"{family}={name}"] + [f"{family}.{k}={v}" for k, v in sub.items()])
    ini = tmp_path / f"{family}_{name}.ini"
    ini.write_text(NET.format(keys=keys))
    torch.manual_seed(seed)
    return build_network(load_config(ini), (3, 8, 8))


def _quantizers(net, family: str) -> list:
    attr = "weight_quantizer" if family == "QWeight" else "act_quantizer"
    return [getattr(net.cells[c], attr) for c in QUANTIZED]


def _stimuli(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(4, 3, 8, 8, generator=g) * 8, torch.tensor([0, 1, 2, 1])


def _learn_step(net) -> None:
    """The lifecycle calls of a one-epoch, one-step run around one forward/backward."""
    for cell_name, q in protocol_quantizers(net):
        q.bind(net.cells[cell_name], net)
    plan = RunPlan(total_epochs=1, learn_size=4, batch_size=4, steps_per_epoch=1)
    for _, q in protocol_quantizers(net):
        q.plan(plan)
        q.start_epoch(1)
    net.train()
    x, label = _stimuli()
    logits = net.forward_all(x)["fc2"].flatten(1)
    torch.nn.functional.cross_entropy(logits, label).backward()
    for _, q in protocol_quantizers(net):
        q.after_step(1)
        assert isinstance(q.wants_calibration(1), bool)


def _eval_logits(net) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net.forward_all(_stimuli()[0])["fc2"]


def test_sat_and_lsq_are_registered():
    assert {"SAT", "LSQ"} <= set(WEIGHT_QUANTIZERS) and {"SAT", "LSQ"} <= set(ACT_QUANTIZERS)


@pytest.mark.parametrize("family,name", ALL)
def test_gradients_reach_every_learnable_parameter(tmp_path, family, name):
    net = _net(tmp_path, family, name)
    found = protocol_quantizers(net)
    assert [c for c, _ in found] == list(QUANTIZED)
    _learn_step(net)
    for cell_name, q in found:
        for pname, p in q.named_parameters():
            assert p.grad is not None, (cell_name, pname)
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, (cell_name, pname)
    first = net.cells["conv1"]                  # the gradient also passes to the layer below
    assert first.bias.grad is not None and first.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("family,name", ALL)
def test_integer_grid_reproduces_the_fake_quantized_tensor(tmp_path, family, name):
    net = _net(tmp_path, family, name)
    _learn_step(net)                            # initializes what needs a first batch
    net.eval()
    with torch.no_grad():
        outputs = net.forward_all(_stimuli(2)[0])
        for cell_name in QUANTIZED:
            cell = net.cells[cell_name]
            if family == "QWeight":
                q = cell.weight_quantizer
                fake, grid = q.fake_quantize(cell.weight), q.integer_grid(cell.weight)
            else:
                fake, grid = outputs[cell_name], cell.act_quantizer.integer_grid()
            assert grid is not None, cell_name
            k = grid.integers(fake)
            assert k.min() >= grid.qmin and k.max() <= grid.qmax, cell_name
            assert torch.equal(torch.remainder(k - grid.qmin, grid.stride), torch.zeros_like(k))
            assert torch.equal(grid.dequantize(k).to(fake.dtype), fake), cell_name
            assert len(k.unique()) > 1, cell_name   # a real grid, not a constant


@pytest.mark.parametrize("family,name", ALL)
def test_state_round_trips_through_a_weights_folder(tmp_path, family, name):
    net = _net(tmp_path, family, name)
    _learn_step(net)
    with torch.no_grad():
        for q in _quantizers(net, family):
            for p in q.parameters():
                p.mul_(1.37)                    # a value no init would produce
    expected = _eval_logits(net)
    save_weights(net, tmp_path / "w", plots=False)
    fresh = _net(tmp_path, family, name, seed=5)
    load_weights(fresh, tmp_path / "w")
    torch.testing.assert_close(_eval_logits(fresh), expected, atol=1e-6, rtol=0)
    files = [q.files(c) for c, q in zip(QUANTIZED, _quantizers(fresh, family), strict=True)]
    _learn_step(fresh)                          # learning goes on from the loaded values
    for c, q, before in zip(QUANTIZED, _quantizers(fresh, family), files, strict=True):
        assert q.files(c).keys() == before.keys()


@pytest.mark.parametrize("family,name", ALL)
def test_state_round_trips_through_net_state(tmp_path, family, name):
    net = _net(tmp_path, family, name)
    _learn_step(net)
    expected = _eval_logits(net)
    save_state(tmp_path / "state", net=net)
    fresh = _net(tmp_path, family, name, seed=5)
    load_state(tmp_path / "state", net=fresh, restore_rng=False)
    torch.testing.assert_close(_eval_logits(fresh), expected, atol=0, rtol=0)
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize("name", list(WEIGHT_QUANTIZERS))
def test_weight_quantize_in_inference_leaves_the_state_alone(tmp_path, name):
    # what saving a weights folder relies on (n2q.io.weights.quantized_weight, no copy)
    net = _net(tmp_path, "QWeight", name)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first = _eval_logits(net)
    for cell_name in QUANTIZED:
        quantized_weight(net.cells[cell_name])
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert torch.equal(_eval_logits(net), first)


@pytest.mark.parametrize("family,name", ALL)
def test_load_file_refuses_wrong_sizes_and_names(tmp_path, family, name):
    q = _quantizers(_net(tmp_path, family, name), family)[0]
    for file, tensor in q.files("cell").items():
        assert file.startswith("cell_") and file.endswith(".syntxt")
        with pytest.raises(UserError, match="expected"):
            q.load_file(file, torch.zeros(tensor.numel() + 1))
    with pytest.raises(UserError):
        q.load_file("cell_unknown.syntxt", torch.tensor([1.0]))


@pytest.mark.parametrize("family,name", ALL)
def test_repr_shows_method_and_range(tmp_path, family, name):
    text = repr(_quantizers(_net(tmp_path, family, name), family)[0])
    assert f"{family}={name}" in text


# -- INI -----------------------------------------------------------------------------------------
def _section(tmp_path: Path, body: str, name: str = "conv1"):
    ini = tmp_path / "net.ini"
    ini.write_text(f"[{name}]\nType=Conv\n{body}\n")
    return load_config(ini)[name]


def _conv():
    return SimpleNamespace(type="Conv", out_shape=(4, 8, 8))


def test_reads_every_sat_key(tmp_path):
    sec = _section(tmp_path, "QWeight=SAT\nQWeight.Range=15\nQWeight.ApplyQuantization=0\n"
                   "QWeight.ApplyScaling=1\nQWeight.QuantMode=Symmetric\nQWeight.Solver=Adam")
    q = build_weight_quantizer(sec, _conv())
    assert (q.range, q.apply_quantization, q.apply_scaling, q.quant_mode, q.solver) == (
        15, False, True, "Symmetric", "Adam")
    a = build_act_quantizer(_section(tmp_path, "QAct=SAT\nQAct.Alpha=6.0\nQAct.Range=15"))
    assert a.alpha.item() == 6.0 and a.range == 15


def test_defaults(tmp_path):
    q = build_weight_quantizer(_section(tmp_path, "QWeight=SAT"), _conv())
    assert (q.range, q.apply_quantization, q.apply_scaling, q.solver, q.mode) == (
        255, True, False, "SGD", "Default")
    a = build_act_quantizer(_section(tmp_path, "QAct=SAT"))
    assert a.alpha.item() == 8.0
    lsq = build_act_quantizer(_section(tmp_path, "QAct=LSQ"))
    assert lsq.step_size.item() == 100.0 and lsq.init_step_size


@pytest.mark.parametrize("spelling", ["StepOptInitStepSize", "SetOptInitStepSize"])
def test_lsq_keys_and_n2d2_spelling(tmp_path, spelling):
    sec = _section(tmp_path, f"QWeight=LSQ\nQWeight.Range=15\nQWeight.StepSize=0.5\n"
                   f"QWeight.{spelling}=0\nQWeight.Mode=Integer")
    q = build_weight_quantizer(sec, _conv())
    assert (q.range, q.step_size.item(), q.init_step_size, q.mode) == (15, 0.5, False,
                                                                        "Integer")


@pytest.mark.parametrize("body,match", [
    ("QWeight=SAT\nQWeight.Rnage=15", r"net.ini:4: \[conv1\] QWeight.Rnage: unknown key for "
     r"QWeight=SAT \(did you mean Range\?\)"),
    ("QWeight=DoReFa", r"net.ini:3: .*unknown quantizer 'DoReFa'; registered: .*LSQ, .*SAT"),
    ("QWeight=SAT\nQWeight.QuantMode=Symetric", r"did you mean Symmetric"),
    ("QWeight=LSQ\nQWeight.QuantMode=Symmetric", r"QuantMode=Symmetric is not supported by "
     r"QWeight=LSQ; valid: Default"),
    ("QWeight=SAT\nQWeight.Mode=Integer\nQWeight.ApplyQuantization=0", r"Mode=Integer needs"),
    ("QWeight=SAT\nQWeight.Range=0", r"Range >= 1"),
    ("QWeight=LSQ\nQWeight.Range=1", r"Range >= 3"),
    ("QWeight=SAT\nQWeight.Range=1\nQWeight.QuantMode=Symmetric", r"needs QWeight.Range >= 2"),
    ("QWeight=SAT\nQWeight.Solver=RMSprop", r"unknown solver 'RMSprop'"),
    ("QWeight=SAT\nQWeight.StepSize=1", r"unknown key for QWeight=SAT"),
    ("QWeight.Range=15", r"QWeight.Range is set but QWeight is not"),
    ("QWeight=LSQ\nQWeight.StepOptInitStepSize=1\nQWeight.SetOptInitStepSize=1", r"keep one"),
    ("QWeight=LSQ\nQWeight.StepSize=-1", r"StepSize must be > 0"),
    ("QWeight=LSQ\nQWeight.Variant=nni", r"Variant=nni is not supported by QWeight=LSQ "
     r"\(did you mean NNI\?\); valid: N2D2, NNI"),
    ("QWeight=LSQ\nQWeight.Variant=NNI\nQWeight.Range=100", r"net.ini:5: .*Variant=NNI needs "
     r"Range = 2\^b - 1"),
])
def test_weight_key_errors(tmp_path, body, match):
    with pytest.raises(UserError, match=match):
        build_weight_quantizer(_section(tmp_path, body), _conv())


@pytest.mark.parametrize("body,match", [
    ("QAct=SAT\nQAct.Alpah=6", r"did you mean Alpha"),
    ("QAct=SAT\nQAct.Alpha=0", r"Alpha must be non-zero"),
    ("QAct=SAT\nQAct.Mode=Integer", r"Mode=Integer is not supported by QAct=SAT"),
    ("QAct=PACT", r"registered: LSQ, SAT"),
    ("QAct.Range=15", r"QAct.Range is set but QAct is not"),
    ("QAct=LSQ\nQAct.Variant=NNI\nQAct.Range=1", r"Variant=NNI needs Range = 2\^b - 1 with b >= 2"),
])
def test_act_key_errors(tmp_path, body, match):
    with pytest.raises(UserError, match=match):
        build_act_quantizer(_section(tmp_path, body))


def test_qweight_refused_on_cells_without_weights(tmp_path):
    sec = _section(tmp_path, "QWeight=SAT", name="pool1")
    with pytest.raises(UserError, match="Conv and Fc cells; this is a Pool cell"):
        build_weight_quantizer(sec, SimpleNamespace(type="Pool", out_shape=(4, 4, 4)))


def test_attach_quantizers(tmp_path):
    ini = tmp_path / "net.ini"
    ini.write_text("[Conv_def]\nQWeight=SAT\nQWeight.Range=15\n"
                   "[conv1] Conv_def\nType=Conv\nQWeight.Range=255\n"
                   "[bn1]\nType=BatchNorm\nQAct=SAT\nQAct.Range=15\n"
                   "[fc1]\nType=Fc\nQWeight=LSQ\nQAct=LSQ\n"
                   "[conv2]\nType=Conv\n"
                   "[relu_override]\nQAct=LSQ\nQAct.Range=255\n")
    cfg = load_config(ini)

    def cell(name, type_, **kw):
        return SimpleNamespace(section=cfg[name], type=type_, out_shape=(1, 1, 1),
                               weight_quantizer=None, act_quantizer=None, **kw)

    cells = {"conv1": cell("conv1", "Conv"), "bn1": cell("bn1", "BatchNorm"),
             "fc1": cell("fc1", "Fc"),
             "conv2": cell("conv2", "Conv", act_section=cfg["relu_override"])}
    attach_quantizers(SimpleNamespace(cells=cells))
    assert cells["conv1"].weight_quantizer.range == 255            # override wins over base
    assert cells["conv1"].act_quantizer is None
    assert cells["bn1"].weight_quantizer is None
    assert type(cells["bn1"].act_quantizer).__name__ == "SATAct"
    assert type(cells["fc1"].weight_quantizer).__name__ == "LSQWeight"
    assert type(cells["fc1"].act_quantizer).__name__ == "LSQAct"
    assert cells["conv2"].weight_quantizer is None
    assert cells["conv2"].act_quantizer.range == 255                # from act_section


def test_integer_mode_needs_a_cell_that_rescales(tmp_path):
    ini = tmp_path / "net.ini"
    ini.write_text("[conv1]\nType=Conv\nQWeight=SAT\nQWeight.Mode=Integer\n")
    cfg = load_config(ini)
    plain = SimpleNamespace(section=cfg["conv1"], type="Conv", out_shape=(1, 1, 1),
                            weight_quantizer=None, act_quantizer=None)
    with pytest.raises(UserError, match=r"net.ini:4: .*Mode=Integer is not available"):
        attach_quantizers(SimpleNamespace(cells={"conv1": plain}))
    able = SimpleNamespace(section=cfg["conv1"], type="Conv", out_shape=(1, 1, 1),
                           weight_quantizer=None, act_quantizer=None, INTEGER_WEIGHTS=True)
    attach_quantizers(SimpleNamespace(cells={"conv1": able}))
    assert able.weight_quantizer.integer
