"""SAT weights (DoReFa on tanh) and activations (CG-PACT) against spec/quant.md's formulas.

Expected values are worked out by hand from the formulas on tiny tensors; gradients are also
checked against plain-PyTorch autograd references (straight-through rounding) that implement the
spec's expressions independently of n2q's custom autograd Functions.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from n2q.quant.registry import apply_weight_op
from n2q.quant.sat import SATAct, SATWeight

# tanh(w) = T exactly enough: T chosen so that no rounding falls near a tie; M = 0.5
T = torch.tensor([0.5, -0.3, 0.1, -0.05], dtype=torch.float64)
W = torch.atanh(T)
U = T / 0.5                                     # [1, -0.6, 0.2, -0.1]


def _sat(w: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    w = w.clone().requires_grad_(True)
    y = SATWeight(**kw).fake_quantize(w)
    c = torch.arange(1, w.numel() + 1, dtype=w.dtype).reshape(w.shape)  # dL/dw_q = c
    (y * c).sum().backward()
    return y.detach(), w.grad / c


@pytest.mark.parametrize("mode,R,levels,gain", [
    # Default, R=3: q=(u+1)/2=[1,.2,.6,.45]; round(3q)=[3,1,2,1]; w_q=2*n/3-1
    ("Default", 3, [1, -1 / 3, 1 / 3, -1 / 3], 1.0),
    # FullRange: q'=(1+.9998/3)q-.4999/3=[1.1666,.1000,.6333,.4333]; round(3q')=[3,0,2,1]
    ("FullRange", 3, [1, -1, 1 / 3, -1 / 3], 1 + 0.9998 / 3),
    # Symmetric, R=4: r=2; round(2u)=[2,-1,0,0]; /2
    ("Symmetric", 4, [1, -0.5, 0, 0], 1.0),
    # Asymmetric, R=5: r=2; q'=1.25u-.25=[1,-1,0,-.375]; round(2q')=[2,-2,0,-1]; /2
    ("Asymmetric", 5, [1, -1, 0, -0.5], 1.25),
])
def test_weight_modes_forward_and_gradient(mode, R, levels, gain):
    y, dw = _sat(W, range=R, quant_mode=mode)
    torch.testing.assert_close(y, torch.tensor(levels, dtype=torch.float64), atol=1e-12, rtol=0)
    # dL/dw = dL/dw_q * (1 - tanh(w)^2) * gain / M
    torch.testing.assert_close(dw, (1 - T * T) * gain / 0.5, atol=1e-12, rtol=1e-12)


def test_weight_levels_count_and_range():
    w = torch.randn(64, 32, 3, 3)
    for R in (1, 3, 15, 255):
        y = SATWeight(range=R).fake_quantize(w)
        assert y.unique().numel() <= R + 1
        assert y.min() >= -1 and y.max() <= 1
    y = SATWeight(range=15).fake_quantize(w)
    assert set((y * 15).round().unique().tolist()) <= set(range(-15, 16, 2))  # 2n-R: odd


def test_clamp_phase_has_no_rounding():
    y, dw = _sat(W, range=3, apply_quantization=False)
    torch.testing.assert_close(y, U, atol=1e-12, rtol=0)     # t/M exactly, not levels
    torch.testing.assert_close(dw, (1 - T * T) / 0.5, atol=1e-12, rtol=1e-12)
    w = torch.randn(1000)
    assert SATWeight(apply_quantization=False).fake_quantize(w).unique().numel() == 1000


@pytest.mark.parametrize("shape,n_out", [((2, 2), 2), ((1, 1, 2, 2), 4)])
def test_apply_scaling(shape, n_out):
    # Default R=3 levels [1,-1/3,1/3,-1/3]: mean 1/6, unbiased var = (44/36)/3 = 11/27
    s = math.sqrt(11 / 27 * n_out)
    y, dw = _sat(W.reshape(shape), range=3, apply_scaling=True)
    expected = torch.tensor([1, -1 / 3, 1 / 3, -1 / 3], dtype=torch.float64) / s
    torch.testing.assert_close(y.reshape(-1), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(dw.reshape(-1), (1 - T * T) / (0.5 * s), atol=1e-12, rtol=1e-12)


def _reference_weight(w, R, mode, apply_scaling):
    """Plain autograd: rounding straight-through, M and s held constant (spec Backward)."""
    def rnd(v):
        return v + (torch.round(v) - v).detach()
    t = torch.tanh(w)
    u = t / t.abs().max().detach()
    if mode == "Default":
        wq = 2 * rnd(R * (u + 1) / 2) / R - 1
    elif mode == "FullRange":
        wq = 2 * rnd(R * ((1 + 0.9998 / R) * (u + 1) / 2 - 0.4999 / R)) / R - 1
    elif mode == "Symmetric":
        wq = rnd((R // 2) * u) / (R // 2)
    else:
        r = R // 2
        wq = rnd(r * ((1 + 1 / (2 * r)) * u - 1 / (2 * r))) / r
    if apply_scaling:
        n_out = w.shape[0] * w.shape[2] * w.shape[3]
        wq = wq / torch.sqrt(wq.var() * n_out).detach()
    return wq


@pytest.mark.parametrize("mode", ["Default", "FullRange", "Symmetric", "Asymmetric"])
@pytest.mark.parametrize("apply_scaling", [False, True])
def test_weight_matches_autograd_reference(mode, apply_scaling):
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64) * 0.3
    c = torch.randn_like(w)
    w1 = w.clone().requires_grad_(True)
    q = SATWeight(range=15, quant_mode=mode, apply_scaling=apply_scaling)
    (q.fake_quantize(w1) * c).sum().backward()
    w2 = w.clone().requires_grad_(True)
    ref = _reference_weight(w2, 15, mode, apply_scaling)
    (ref * c).sum().backward()
    y = q.fake_quantize(w)
    torch.testing.assert_close(y, ref.detach(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(w1.grad, w2.grad, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("mode", ["Default", "FullRange", "Symmetric", "Asymmetric"])
@pytest.mark.parametrize("apply_scaling", [False, True])
def test_integer_mode_same_predictions_as_fake_quant(mode, apply_scaling):
    torch.manual_seed(1)
    x = torch.randn(16, 3, 8, 8)
    w = torch.randn(5, 3, 3, 3) * 0.2
    b = torch.randn(5)

    def conv(x, w, b):
        return F.conv2d(x, w, b, padding=1)

    kw = dict(range=15, quant_mode=mode, apply_scaling=apply_scaling)
    fake_q, int_q = SATWeight(**kw), SATWeight(mode="Integer", **kw)
    w_int = int_q(w).weight
    assert torch.equal(w_int, w_int.round()), "Integer mode must hold integer weights"
    assert w_int.abs().max() <= 15
    w1, w2 = w.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y_fake = apply_weight_op(fake_q, conv, x, w1, b)
    y_int = apply_weight_op(int_q, conv, x, w2, b)
    torch.testing.assert_close(y_int, y_fake, atol=1e-4, rtol=1e-4)
    assert torch.equal(y_int.flatten(1).argmax(1), y_fake.flatten(1).argmax(1))
    torch.testing.assert_close(int_q.fake_quantize(w), fake_q.fake_quantize(w), atol=1e-6, rtol=0)
    # same learning signal: the weight gradients agree
    c = torch.randn_like(y_fake)
    (y_fake * c).sum().backward()
    (y_int * c).sum().backward()
    torch.testing.assert_close(w2.grad, w1.grad, atol=1e-4, rtol=1e-4)


def test_mask_applied_after_quantization():
    # SAT Default with odd R maps w = 0 to +1/R: a masked weight must still be exactly 0
    w = torch.tensor([[0.0, 0.5], [0.3, -0.2]])
    mask = torch.tensor([[False, True], [True, True]])
    q = SATWeight(range=15)
    assert q.fake_quantize(w)[0, 0] != 0
    y = apply_weight_op(q, lambda x, w, b: w.sum() * x, torch.tensor(1.0), w, None, mask)
    assert y == (q.fake_quantize(w) * mask).sum()


def test_all_zero_weights_do_not_produce_nan():
    y = SATWeight(range=15, apply_scaling=True).fake_quantize(torch.zeros(3, 4))
    assert torch.isfinite(y).all()


# -- activations: CG-PACT ----------------------------------------------------------------------
X = torch.tensor([-1.0, 0.0, 0.3, 0.5, 1.2, 2.0, 3.0], dtype=torch.float64)


def test_act_forward_and_gradients_by_hand():
    q = SATAct(alpha=2.0, range=4).double()
    x = X.clone().requires_grad_(True)
    y = q(x)
    # a=2, q=clamp(x,0,2)/2=[0,0,.15,.25,.6,1,1]; round(4q)=[0,0,1,1,2,4,4]; y=2*n/4
    torch.testing.assert_close(y.detach(), torch.tensor([0, 0, 0.5, 0.5, 1, 2, 2],
                                                        dtype=torch.float64))
    c = torch.arange(1.0, 8.0, dtype=torch.float64)
    (y * c).sum().backward()
    # dL/dx = c where 0 < x <= a
    torch.testing.assert_close(x.grad, torch.tensor([0, 0, 3, 4, 5, 6, 0], dtype=torch.float64))
    # dL/dalpha = sum c*(1 if x>=a else round(Rq)/R - q) = 3*.1 + 4*0 + 5*(-.1) + 6 + 7
    torch.testing.assert_close(q.alpha.grad, torch.tensor(12.8, dtype=torch.float64))


def test_act_matches_autograd_reference():
    torch.manual_seed(2)
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64) * 3
    c = torch.randn_like(x)
    q = SATAct(alpha=2.5, range=15).double()
    x1 = x.clone().requires_grad_(True)
    (q(x1) * c).sum().backward()
    # reference: PACT with straight-through rounding; its alpha gradient is the calibrated one
    alpha = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    x2 = x.clone().requires_grad_(True)
    a = alpha.abs()
    v = 15 * torch.minimum(torch.clamp(x2, min=0), a) / a
    ref = a * (v + (torch.round(v) - v).detach()) / 15
    (ref * c).sum().backward()
    torch.testing.assert_close(q(x).detach(), ref.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(q.alpha.grad, alpha.grad, atol=1e-9, rtol=1e-9)


def test_act_levels():
    y = SATAct(alpha=6.0, range=15)(torch.randn(10000) * 5)
    assert y.unique().numel() == 16
    assert y.min() == 0 and y.max() == 6.0


def test_act_alpha_file_round_trip():
    q = SATAct(alpha=6.0, range=15)
    files = q.files("bn1")
    assert list(files) == ["bn1_QAct_SAT_Alpha.syntxt"]
    assert files["bn1_QAct_SAT_Alpha.syntxt"].tolist() == [6.0]
    other = SATAct()
    other.load_file("bn1_QAct_SAT_Alpha.syntxt", torch.tensor([6.0]))
    assert other.alpha.item() == 6.0


def test_act_zero_alpha_file_is_refused():
    from n2q.errors import UserError

    with pytest.raises(UserError, match="alpha must be a non-zero number"):
        SATAct().load_file("bn1_QAct_SAT_Alpha.syntxt", torch.tensor([0.0]))
