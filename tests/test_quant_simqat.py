"""SimQAT fake quantization (spec/quant.md "SimQAT") on tiny tensors worked out by hand.

Values are chosen so that every scale is a power of two: the spec's formulas are then exact in
float32 and the expected tensors below are written out, not recomputed with the code's formula.
"""

from __future__ import annotations

import pytest
import torch

from n2q.config import load_config
from n2q.errors import UserError
from n2q.quant.simqat import SimQATAct, SimQATWeight, nudge, round_half_away


def _act(**kw) -> SimQATAct:
    return SimQATAct(**kw)


def _weight(**kw) -> SimQATWeight:
    return SimQATWeight(**kw)


def _nudge(lo, hi, qmin, qmax, symmetric):
    out = nudge(torch.tensor(lo), torch.tensor(hi), qmin, qmax, symmetric)
    return [t.tolist() for t in out]


def test_round_half_away_from_zero():
    v = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 2.4999, 0.49999997])
    assert round_half_away(v).tolist() == [1, 2, 3, -1, -3, 2, 0]


@pytest.mark.parametrize("lo,hi,qmin,qmax,symmetric,expected", [
    # asymmetric R=3: scale (1 + 0.5)/3 = 0.5, zp = round(0 + 0.5/0.5) = 1
    ([-0.5], [1.0], 0, 3, False, [[0.5], [1.0], [-0.5], [1.0]]),
    # zp = round(0.25/0.5) = round(0.5) = 1 (half away; half-to-even would give 0)
    ([-0.25], [1.25], 0, 3, False, [[0.5], [1.0], [-0.5], [1.0]]),
    # the range is widened to hold 0: [0.5, 1] -> [0, 1], scale 1/3, zp 0
    ([0.5], [1.5], 0, 3, False, [[0.5], [0.0], [0.0], [1.5]]),
    # narrow asymmetric: qmin 1, scale 1/2, zp = round(1 + 1) = 2
    ([-0.5], [0.5], 1, 3, False, [[0.5], [2.0], [-0.5], [0.5]]),
    # symmetric R=3: M = 1.5, scale 3/3 = 1, zp = round(1.5) = 2, grid [-2, 1]
    ([-1.5], [0.25], 0, 3, True, [[1.0], [2.0], [-2.0], [1.0]]),
    # symmetric narrow R=3: qmin 1, scale 3/2, zp = round(1 + 1) = 2, grid [-1, 1]
    ([-0.5], [1.5], 1, 3, True, [[1.5], [2.0], [-1.5], [1.5]]),
    # symmetric 8-bit: zp = 128, grid [-128, 127] * 2M/255 (M = 2)
    ([-2.0], [1.0], 0, 255, True, [[4 / 255], [128.0], [-128 * 4 / 255], [127 * 4 / 255]]),
    # symmetric 8-bit narrow: scale 2M/254, zp 128, grid [-127, 127]
    ([-1.0], [1.0], 1, 255, True, [[2 / 254], [128.0], [-1.0], [1.0]]),
    # per channel: two ranges at once
    ([-0.5, 0.0], [1.0, 3.0], 0, 3, False, [[0.5, 1.0], [1.0, 0.0], [-0.5, 0.0],
                                             [1.0, 3.0]]),
])
def test_nudged_ranges_and_zero_points(lo, hi, qmin, qmax, symmetric, expected):
    got = _nudge(lo, hi, qmin, qmax, symmetric)
    for g, e in zip(got, expected, strict=True):      # the scale has float32 precision
        assert g == pytest.approx(e, rel=2 ** -24, abs=1e-15)


def test_activation_forward_and_ste_per_layer():
    q = _act(range=3)
    q.train()
    # batch range [-0.5, 1]: scale 0.5, zp 1, grid {-0.5, 0, 0.5, 1}
    x = torch.tensor([-0.5, -0.51, -0.3, 0.24, 0.25, 0.75, 1.0, 1.01], requires_grad=True)
    x_ = x.detach().clone()
    x_[1], x_[-1] = -0.5, 1.0     # the batch range is what we want: min -0.5, max 1
    q(x_)
    q.eval()
    y = q(x)
    # (x + 0.5)/0.5 = 0, 0(clamped), 0.4, 1.48, 1.5 -> 2 (away), 2.5 -> 3 (away), 3, 3
    assert y.tolist() == [-0.5, -0.5, -0.5, 0.0, 0.5, 1.0, 1.0, 1.0]
    y.backward(torch.arange(1.0, 9.0))
    # straight through on [-0.5, 1] bounds included, zero outside
    assert x.grad.tolist() == [1, 0, 3, 4, 5, 6, 7, 0]


def test_weight_forward_and_ste_per_channel():
    q = _weight(range=3)
    q.train()
    w = torch.tensor([[-0.75, 0.3], [0.2, 1.5]], requires_grad=True)
    y = q.fake_quantize(w)
    # ch0: M 0.75, scale 0.5, zp 2, grid [-1, 0.5]: -0.75 -> v 0.5 -> 1 -> -0.5; 0.3 -> 0.5
    # ch1: M 1.5, scale 1, zp 2, grid [-2, 1]: 0.2 -> 0; 1.5 -> clamped to 1
    assert y.tolist() == [[-0.5, 0.5], [0.0, 1.0]]
    y.backward(torch.ones(2, 2))
    assert w.grad.tolist() == [[1, 1], [1, 0]]
    assert q.min.tolist() == [-0.75, 0.0] and q.max.tolist() == pytest.approx([0.3, 1.5])


def test_activation_per_channel_on_axis_1():
    q = _act(range=3, per_channel=True)
    q.train()
    x = torch.tensor([[[[-0.5, 1.0]], [[0.0, 3.0]]]])       # [1, 2, 1, 2]
    q(x)
    assert q.min.tolist() == [-0.5, 0.0] and q.max.tolist() == [1.0, 3.0]
    q.eval()
    y = q(torch.tensor([[[[0.3, 0.3]], [[1.4, 1.6]]]]))
    # ch0 grid step 0.5 from -0.5: 0.3 -> 0.5; ch1 step 1 from 0: 1.4 -> 1, 1.6 -> 2
    assert y.tolist() == [[[[0.5, 0.5]], [[1.0, 2.0]]]]


def test_tracking_without_ema_holds_zero_and_follows_the_latest_batch():
    q = _act(range=255)
    assert q.min.tolist() == [-6.0] and q.max.tolist() == [6.0]   # initial range
    q.train()
    q(torch.tensor([1.0, 2.0]))
    assert q.min.tolist() == [0.0] and q.max.tolist() == [2.0]
    q(torch.tensor([-3.0, -1.0]))
    assert q.min.tolist() == [-3.0] and q.max.tolist() == [0.0]
    q.eval()
    q(torch.tensor([-100.0, 100.0]))                           # inference: no tracking
    assert q.min.tolist() == [-3.0] and q.max.tolist() == [0.0]


def test_ema_weights_the_new_batch_by_decay():
    q = _act(range=255, ema=True, ema_decay=0.75)
    q.train()
    q(torch.tensor([-2.0, 4.0]))
    # 0.75*batch + 0.25*initial [-6, 6]
    assert q.min.tolist() == [-3.0] and q.max.tolist() == [4.5]
    q(torch.tensor([1.0, 2.0]))
    # min 0.75*1 + 0.25*(-3) = 0 ; max 0.75*2 + 0.25*4.5 = 2.625
    assert q.min.tolist() == [0.0] and q.max.tolist() == [2.625]
    q(torch.tensor([3.0, 3.0]))
    # min 0.75*3 + 0 = 2.25 -> 0 (min <= 0) ; max 2.25 + 0.65625 = 2.90625
    assert q.min.tolist() == [0.0] and q.max.tolist() == [2.90625]


def test_ema_default_decay():
    q = _act(ema=True)
    q.train()
    q(torch.tensor([-1.0, 1.0]))
    assert q.min.item() == pytest.approx(0.999 * -1 + 0.001 * -6)
    assert q.max.item() == pytest.approx(0.999 * 1 + 0.001 * 6)


def test_weight_ema_starts_from_the_first_batch():
    q = _weight(range=255, ema=True, ema_decay=0.5, per_channel=False)
    q.train()
    q.fake_quantize(torch.tensor([[-1.0, 2.0]]))
    assert q.min.tolist() == [-1.0] and q.max.tolist() == [2.0]
    q.fake_quantize(torch.tensor([[-3.0, 0.0]]))
    assert q.min.tolist() == [-2.0] and q.max.tolist() == [1.0]


def test_quant_delay_tracks_ranges_and_forwards_float():
    q = _act(range=3, quant_delay=2)
    q.train()
    x = torch.tensor([-0.5, 0.3, 1.0])
    assert torch.equal(q(x), x)                       # step 0: float
    assert q.min.tolist() == [-0.5] and q.max.tolist() == [1.0]
    q.after_step(1)
    assert torch.equal(q(x), x)
    q.after_step(2)
    assert q(x).tolist() == [-0.5, 0.5, 1.0]          # quantized from step 2 on
    q.after_step(1)                                   # e.g. a state loaded from step 1
    q.eval()
    assert q(x).tolist() == [-0.5, 0.5, 1.0]          # inference always quantizes


def test_integer_grids():
    a = _act(range=3)
    a.train()
    a(torch.tensor([-0.5, 1.0]))
    g = a.integer_grid()
    assert (g.qmin, g.qmax, g.axis) == (0, 3, None)
    assert g.scale.item() == 0.5 and g.zero_point.item() == 1.0
    y = a(torch.tensor([-0.5, 0.0, 0.5, 1.0]))
    assert g.integers(y).tolist() == [0, 1, 2, 3]
    w = torch.tensor([[-0.75, 0.3], [0.2, 1.5]])
    q = _weight(range=3)
    gw = q.integer_grid(w)                            # symmetric: signed, zero point 0
    assert (gw.qmin, gw.qmax, gw.axis) == (-2, 1, 0)
    assert gw.scale.tolist() == [0.5, 1.0] and gw.zero_point.tolist() == [0.0, 0.0]
    assert gw.integers(q.fake_quantize(w)).tolist() == [[-1, 1], [0, 1]]
    assert torch.equal(gw.dequantize(gw.integers(q.fake_quantize(w))).float(), q.fake_quantize(w))
    q8 = _weight()
    g8 = q8.integer_grid(torch.randn(4, 3))
    assert (g8.qmin, g8.qmax, g8.bits) == (-128, 127, 8)
    qa = _weight(range=3, symmetric=False, per_channel=False)
    ga = qa.integer_grid(torch.tensor([[-0.5, 1.0]]))
    assert (ga.qmin, ga.qmax, ga.axis, ga.zero_point.item()) == (0, 3, None, 1.0)


def test_files_round_trip_and_loaded_ranges_are_kept():
    q = _weight(range=255)
    q.train()
    q.fake_quantize(torch.tensor([[-1.0, 2.0], [0.5, 0.25]]))
    files = q.files("conv1")
    assert list(files) == ["conv1_QWeight_SimQAT_MinMax.syntxt"]
    assert files["conv1_QWeight_SimQAT_MinMax.syntxt"].tolist() == [[-1.0, 2.0], [0.0, 0.5]]
    fresh = _weight(range=255)
    fresh.load_file("conv1_QWeight_SimQAT_MinMax.syntxt", torch.tensor([[-1.0, 2.0],
                                                                         [0.0, 0.5]]))
    fresh.eval()
    w = torch.tensor([[3.0, 0.1], [0.1, 0.1]])       # its own range would differ: kept
    assert torch.equal(fresh.fake_quantize(w), q.eval().fake_quantize(w))
    assert list(_act().files("relu1")) == ["relu1_QAct_SimQAT_MinMax.syntxt"]
    with pytest.raises(UserError, match="min max"):
        fresh.load_file("conv1_QWeight_SimQAT_MinMax.syntxt", torch.tensor([[0.5, 2.0],
                                                                             [0.0, 0.5]]))
    with pytest.raises(UserError, match="expected 2 line"):
        fresh.load_file("conv1_QWeight_SimQAT_MinMax.syntxt", torch.tensor([[-1.0, 2.0]]))


def test_state_dict_carries_ranges_and_steps():
    q = _act(range=255, per_channel=True)
    q.train()
    q(torch.randn(2, 3, 4, 4))
    q.after_step(7)
    fresh = _act(range=255, per_channel=True)
    fresh.load_state_dict(q.state_dict())
    assert torch.equal(fresh.min, q.min) and int(fresh.steps) == 7


# -- INI keys --------------------------------------------------------------------------------
def _section(tmp_path, body: str):
    ini = tmp_path / "net.ini"
    ini.write_text(f"[conv1]\nType=Conv\n{body}\n")
    return load_config(ini)["conv1"]


def test_defaults_and_keys_from_the_ini(tmp_path):
    sec = _section(tmp_path, "QWeight=SimQAT\nQAct=SimQAT\nQAct.EMA=1\nQAct.EMADecay=0.99\n"
                   "QWeight.NarrowRange=1\nQWeight.QuantDelay=900\nQAct.Range=15")
    w = SimQATWeight.from_section(sec)
    a = SimQATAct.from_section(sec)
    assert (w.settings.per_channel, w.settings.symmetric, w.settings.narrow_range) == (
        True, True, True)
    assert w.settings.quant_delay == 900 and w.settings.range == 255
    assert (a.settings.per_channel, a.settings.symmetric, a.settings.ema) == (False, False, True)
    assert a.settings.ema_decay == 0.99 and a.range == 15


@pytest.mark.parametrize("body,match", [
    ("QWeight=SimQAT\nQWeight.EMADecay=1.5", r"net.ini:4: .*EMADecay.*\[0, 1\]"),
    ("QWeight=SimQAT\nQWeight.FoldBN=Three", r"net.ini:4: .*FoldBN.*OneConv, TwoConv"),
    ("QWeight=SimQAT\nQWeight.FreezeBN=10", r"net.ini:4: .*FreezeBN only acts with"),
    ("QWeight=SimQAT\nQWeight.Range=1\nQWeight.NarrowRange=1", r"net.ini:5: .*NarrowRange"),
    ("QWeight=SimQAT\nQWeight.QuantDelay=-1", r"net.ini:4: .*QuantDelay.*>= 0"),
    ("QWeight=SimQAT\nQWeight.EMAdecay=0.9", r"net.ini:4: .*unknown key"),
])
def test_bad_keys_are_located(tmp_path, body, match):
    with pytest.raises(UserError, match=match):
        SimQATWeight.from_section(_section(tmp_path, body))
