"""LSQ weights and activations against spec/quant.md: hand-computed values on tiny tensors and
an NNI-style autograd reference (grad_scale + round_pass, seed 003) for the gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from n2q.quant.lsq import LSQAct, LSQWeight
from n2q.quant.registry import apply_weight_op


def _fixed(q, s):
    """Use step size s as if loaded (no first-forward init)."""
    q.load_file(next(iter(q.files("c"))), torch.tensor([s], dtype=torch.float64))
    return q


def test_weight_levels_from_range():
    assert (LSQWeight(range=255).qn, LSQWeight(range=255).qp) == (-128, 127)
    assert (LSQWeight(range=15).qn, LSQWeight(range=15).qp) == (-8, 7)
    assert (LSQAct(range=15).qn, LSQAct(range=15).qp) == (0, 15)
    with pytest.raises(ValueError):
        LSQWeight(range=2)          # Qp = 0


@pytest.mark.parametrize("kind", ["weight", "NNI activation"])
def test_signed_forward_and_gradients_by_hand(kind):
    # R=7: Qn=-4, Qp=3 (weights; activations of Variant=NNI too: 3-bit signed, g with qmax=3)
    # s=0.5 -> v=[-6,-3.8,-.4,.6,1.48,3.2]
    q = LSQWeight(range=7) if kind == "weight" else LSQAct(range=7, variant="NNI")
    q = _fixed(q.double(), 0.5)
    assert (q.qn, q.qp) == (-4, 3)
    w = torch.tensor([-3.0, -1.9, -0.2, 0.3, 0.74, 1.6], dtype=torch.float64,
                     requires_grad=True)
    y = q.fake_quantize(w) if kind == "weight" else q(w)
    # clamp(round(v), -4, 3) = [-4,-4,0,1,1,3] times s
    torch.testing.assert_close(y.detach(), torch.tensor([-2, -2, 0, 0.5, 0.5, 1.5],
                                                        dtype=torch.float64))
    c = torch.tensor([1.0, 2, 3, 4, 5, 6], dtype=torch.float64)
    (y * c).sum().backward()
    # straight through strictly inside (Qn, Qp)
    torch.testing.assert_close(w.grad, torch.tensor([0, 2, 3, 4, 5, 0], dtype=torch.float64))
    # g * sum c*(Qn | round(v)-v | Qp), g = 1/sqrt(6*3)
    expected = (1 * -4 + 2 * -0.2 + 3 * 0.4 + 4 * 0.4 + 5 * -0.48 + 6 * 3) / math.sqrt(18)
    torch.testing.assert_close(q.step_size.grad, torch.tensor(expected, dtype=torch.float64))


def test_act_forward_and_gradients_by_hand():
    q = _fixed(LSQAct(range=3).double(), 1.0)
    x = torch.tensor([-1.0, 0.4, 1.6, 2.7, 4.0], dtype=torch.float64, requires_grad=True)
    y = q(x)
    torch.testing.assert_close(y.detach(), torch.tensor([0, 0, 2, 3, 3], dtype=torch.float64))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0, 1, 1, 1, 0], dtype=torch.float64))
    # g = 1/sqrt(numel(x) * R) = 1/sqrt(15); sum = 0 - .4 + .4 + .3 + 3
    torch.testing.assert_close(q.step_size.grad,
                               torch.tensor(3.3 / math.sqrt(15), dtype=torch.float64))


def test_nni_variant_init_uses_the_signed_qmax():
    a = LSQAct(range=255, variant="NNI")
    a(torch.tensor([0.0, -1.0, 3.0, 4.0]))           # mean |x| = 2, qmax = 127
    assert a.step_size.item() == pytest.approx(4 / math.sqrt(127))
    w = LSQWeight(range=15, variant="NNI")           # on weights NNI's form is N2D2's
    assert (w.qn, w.qp) == (LSQWeight(range=15).qn, LSQWeight(range=15).qp) == (-8, 7)


def _nni_reference(x, s, qn, qp, g):
    """Seed 003's formulation: grad_scale(s, g) and round_pass, plain autograd."""
    s_scaled = (s - s * g).detach() + s * g
    v = torch.clamp(x / s_scaled, qn, qp)
    return (v + (torch.round(v) - v).detach()) * s_scaled


@pytest.mark.parametrize("cls,R,shape", [(LSQWeight, 15, (8, 4, 3, 3)),
                                         (LSQWeight, 255, (10, 20)),
                                         (LSQAct, 15, (4, 8, 5, 5))])
def test_matches_autograd_reference(cls, R, shape):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    c = torch.randn_like(x)
    q = _fixed(cls(range=R).double(), 0.13)
    x1 = x.clone().requires_grad_(True)
    y = q.fake_quantize(x1) if cls is LSQWeight else q(x1)
    (y * c).sum().backward()
    s = torch.tensor(0.13, dtype=torch.float64, requires_grad=True)
    x2 = x.clone().requires_grad_(True)
    ref = _nni_reference(x2, s, q.qn, q.qp, 1 / math.sqrt(x.numel() * q.qp))
    (ref * c).sum().backward()
    torch.testing.assert_close(y.detach(), ref.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(q.step_size.grad, s.grad, atol=1e-12, rtol=1e-9)


def test_first_forward_init_weights_and_activations():
    w = torch.tensor([1.0, -3.0, 2.0, -2.0])        # mean |w| = 2
    q = LSQWeight(range=15)                          # Qp = 7
    q.fake_quantize(w)
    assert q.step_size.item() == pytest.approx(4 / math.sqrt(7))
    q.fake_quantize(w * 10)                          # only the first forward initializes
    assert q.step_size.item() == pytest.approx(4 / math.sqrt(7))
    a = LSQAct(range=255)
    a(torch.tensor([0.0, 1.0, 3.0, 4.0]))           # mean |x| = 2
    assert a.step_size.item() == pytest.approx(4 / math.sqrt(255))


def test_no_init_keeps_step_size_key():
    q = LSQWeight(range=15, step_size=0.25, init_step_size=False)
    q.fake_quantize(torch.randn(100))
    assert q.step_size.item() == 0.25


def test_loaded_step_size_is_not_reinitialized():
    q = LSQWeight(range=15)
    q.load_file("conv1_alphaW_LSQ.syntxt", torch.tensor([0.0625]))
    q.fake_quantize(torch.randn(100) * 5)
    assert q.step_size.item() == 0.0625
    a = LSQAct(range=15)
    a.load_file("bn1_QAct_LSQ_StepSize.syntxt", torch.tensor([0.5]))
    a(torch.rand(100) * 9)
    assert a.step_size.item() == 0.5


def test_state_dict_carries_init_done():
    q = LSQAct(range=15)
    q(torch.rand(50))
    fresh = LSQAct(range=15)
    fresh.load_state_dict(q.state_dict())
    s = fresh.step_size.item()
    fresh(torch.rand(50) * 100)
    assert fresh.step_size.item() == s


def test_files_names():
    assert list(LSQWeight().files("conv1")) == ["conv1_alphaW_LSQ.syntxt"]
    assert list(LSQAct().files("bn1")) == ["bn1_QAct_LSQ_StepSize.syntxt"]


def test_integer_mode_same_predictions_and_gradients():
    torch.manual_seed(3)
    x, w, b = torch.randn(8, 20), torch.randn(6, 20) * 0.1, torch.randn(6)
    fake_q, int_q = _fixed(LSQWeight(range=15), 0.02), _fixed(
        LSQWeight(range=15, mode="Integer"), 0.02)
    w1, w2 = w.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y_fake = apply_weight_op(fake_q, F.linear, x, w1, b)
    y_int = apply_weight_op(int_q, F.linear, x, w2, b)
    w_int = int_q(w).weight
    assert torch.equal(w_int, w_int.round()) and w_int.min() >= -8 and w_int.max() <= 7
    torch.testing.assert_close(y_int, y_fake, atol=1e-5, rtol=1e-5)
    assert torch.equal(y_int.argmax(1), y_fake.argmax(1))
    c = torch.randn_like(y_fake)
    (y_fake * c).sum().backward()
    (y_int * c).sum().backward()
    torch.testing.assert_close(w2.grad, w1.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(int_q.step_size.grad, fake_q.step_size.grad, atol=1e-5,
                               rtol=1e-4)


def test_loading_a_non_positive_step_size_is_refused_and_changes_nothing():
    from n2q.errors import UserError

    q = LSQAct(range=15, step_size=0.5, init_step_size=False)
    with pytest.raises(UserError, match="bn1_QAct_LSQ_StepSize.syntxt: the step size must be > 0"):
        q.load_file("bn1_QAct_LSQ_StepSize.syntxt", torch.tensor([-0.1]))
    assert q.step_size.item() == 0.5
