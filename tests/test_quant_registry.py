"""Registry-wide properties (every registered quantizer), INI reading and attach_quantizers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from n2q.config import load_config
from n2q.errors import UserError
from n2q.quant import (
    ACT_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    attach_quantizers,
    build_act_quantizer,
    build_weight_quantizer,
)

ALL = [("QWeight", n) for n in WEIGHT_QUANTIZERS] + [("QAct", n) for n in ACT_QUANTIZERS]


def _make(family: str, name: str):
    registry = WEIGHT_QUANTIZERS if family == "QWeight" else ACT_QUANTIZERS
    return registry[name](range=15)


def _input(family: str) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(6, 4, 3, 3)
    return x * 0.3 if family == "QWeight" else x * 2


def test_sat_and_lsq_are_registered():
    assert {"SAT", "LSQ"} <= set(WEIGHT_QUANTIZERS) and {"SAT", "LSQ"} <= set(ACT_QUANTIZERS)


@pytest.mark.parametrize("family,name", ALL)
def test_every_parameter_and_the_input_get_a_gradient(family, name):
    q = _make(family, name)
    x = _input(family).requires_grad_(True)
    y = q(x)
    assert y.shape == x.shape
    (y * torch.randn_like(y)).sum().backward()
    if not getattr(q, "replaces_weight", False):     # SLB: its logits stand for the weight
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in q.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("family,name", ALL)
def test_inference_path_equals_training_path(family, name):
    q = _make(family, name)
    x = _input(family)
    y_train = q(x.clone().requires_grad_(True)).detach()
    with torch.no_grad():
        y_infer = q(x)
    torch.testing.assert_close(y_infer, y_train, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family,name", ALL)
def test_files_round_trip_and_loaded_values_are_kept(family, name):
    q = _make(family, name)
    x = _input(family)
    y = q(x)                                    # initializes what needs a first batch
    with torch.no_grad():
        for p in q.parameters():
            p.mul_(1.37)                        # a value no init would produce
    files = q.files("cell")
    y = q(x)
    fresh = _make(family, name)
    for file, tensor in files.items():
        assert file.startswith("cell_") and file.endswith(".syntxt")
        fresh.load_file(file, tensor.clone())
    for file, tensor in fresh.files("cell").items():
        assert torch.equal(tensor, files[file])
    torch.testing.assert_close(fresh(x), y)    # no re-initialization after a load
    for file, tensor in fresh.files("cell").items():
        assert torch.equal(tensor, files[file])


@pytest.mark.parametrize("family,name", ALL)
def test_load_file_refuses_wrong_sizes_and_names(family, name):
    q = _make(family, name)
    for file in q.files("cell"):
        with pytest.raises(UserError, match="expected "):
            q.load_file(file, torch.tensor([1.0, 2.0]))
    with pytest.raises(UserError):
        q.load_file("cell_unknown.syntxt", torch.tensor([1.0]))


@pytest.mark.parametrize("family,name", ALL)
def test_repr_shows_method_and_range(family, name):
    text = repr(_make(family, name))
    assert f"{family}={name}" in text and "range=15" in text


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
