"""The integer arithmetic of fusion.md on hand-computed values and a float64 fake-quant reference.

The reference below is written from quant.md / fusion.md formulas in plain PyTorch (SAT weights
and activations, BatchNorm in inference), independently of n2q's cells and quantizers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from n2q.quant.fusion.layers import IntegerBranchLayer, IntegerElemWise, IntegerLinearLayer
from n2q.quant.integer import (
    Rescale,
    accumulator_dtype,
    bn_factor,
    branch_rescale,
    conv_bn_act_rescale,
    elemwise_rescale,
    fc_rescale,
    integer_weights,
    quantize_input,
    requantize,
    weight_scale,
)


def sat_weights(w: torch.Tensor, r: int, mode: str) -> torch.Tensor:
    """quant.md SAT weights (no scaling), float64."""
    t = torch.tanh(w.double())
    m = t.abs().max()
    if mode == "Default":
        q = (t / m + 1) / 2
        return 2 * torch.round(r * q) / r - 1
    half = r // 2
    return torch.round(half * t / m) / half


def sat_act(y: torch.Tensor, alpha: float, r: int) -> torch.Tensor:
    """quant.md SAT activation: a * round(R * clamp(y, 0, a) / a) / R."""
    return alpha * torch.round(r * torch.clamp(y, 0, alpha) / alpha) / r


# --- W_s ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "r, mode, expected",
    [
        (1, "Default", 1),
        (2, "Default", 1),
        (3, "Default", 3),
        (15, "Default", 15),  # N2D2's 4-bit special case: W' = 2k - 15
        (16, "Default", 8),
        (255, "Default", 255),
        (1, "Symmetric", 1),
        (15, "Symmetric", 7),
        (255, "Symmetric", 127),
    ],
)
def test_weight_scale(r: int, mode: str, expected: int) -> None:
    assert weight_scale(r, mode) == expected


def test_weight_scale_refuses_unknown_mode() -> None:
    with pytest.raises(ValueError, match="Default"):
        weight_scale(15, "Bogus")


@pytest.mark.parametrize(
    "r, mode",
    [(r, "Default") for r in (1, 2, 3, 7, 15, 16, 63, 127, 255)]
    + [(r, "Symmetric") for r in (2, 3, 7, 15, 16, 63, 127, 255)],  # Symmetric needs R >= 2
)
def test_integer_weights_are_the_grid(r: int, mode: str) -> None:
    torch.manual_seed(r)
    w_q = sat_weights(torch.randn(4, 3, 3, 3), r, mode).float()
    w_s = weight_scale(r, mode)
    w_int = integer_weights(w_q, w_s)
    assert w_int.dtype in (torch.int8, torch.int16)
    torch.testing.assert_close(w_int.double() / w_s, w_q.double(), rtol=0, atol=1e-6)
    assert w_int.abs().max().item() == w_s  # the extreme weight lands on +-W_s
    assert len(torch.unique(w_int)) <= r + 1


def test_integer_weights_sign_and_refusal() -> None:
    w_q = torch.tensor([[1.0, -1 / 3], [1 / 3, -1.0]])
    w_int = integer_weights(w_q, 3, torch.tensor([1.0, -1.0]))
    assert w_int.tolist() == [[3, -1], [-1, 3]]
    with pytest.raises(ValueError, match="grid"):
        integer_weights(torch.tensor([[0.5, 0.1]]), 3)  # clamp-phase weights


# --- Conv + BN + SAT activation, worked out by hand ---------------------------------------------
def test_conv_bn_act_by_hand() -> None:
    """Two output channels, 1x1 conv on two input channels (values worked out on paper).

    Input (alpha_in, R_in) = (2, 4): x_int = [2, 4] is x = [1, 2]. R_w = 3 Default: W_s = 3.
    Output (alpha_out, R_out) = (3, 6).
    ch0: w_q = [1, 1/3], gamma 2, var 3, eps 1 -> f = 1; beta 0.5, mu 0.25:
         z = 5/3, y = 23/12, y*R/a = 23/6 -> 4.  W' = [3, 1], acc = 10, B' = 1.5, C' = 18,
         S' = 1/3: round(11.5/3) = 4.
    ch1: w_q = [-1, -1/3], gamma -4 -> f = -2, sg = -1; beta 0.25, mu -1:
         z = -5/3, y = 19/12 -> 19/6 -> 3.  W' = [3, 1], acc = 10, B' = -5.25, C' = 9,
         S' = 2/3: round(4.75 * 2/3) = 3.
    """
    w_q = torch.tensor([[1.0, 1 / 3], [-1.0, -1 / 3]]).view(2, 2, 1, 1)
    f = bn_factor(torch.tensor([2.0, -4.0]), torch.tensor([3.0, 3.0]), eps=1.0)
    assert f.tolist() == [1.0, -2.0]
    w_int = integer_weights(w_q, weight_scale(3), torch.sign(f))
    assert w_int.view(2, 2).tolist() == [[3, 1], [3, 1]]
    rescale = conv_bn_act_rescale(
        f,
        torch.tensor([0.5, 0.25]),
        torch.tensor([0.25, -1.0]),
        torch.zeros(2),
        alpha_in=2.0,
        range_in=4,
        alpha_out=3.0,
        range_out=6,
        w_s=3,
    )
    torch.testing.assert_close(rescale.bias, torch.tensor([1.5, -5.25], dtype=torch.float64))
    torch.testing.assert_close(rescale.clip, torch.tensor([18.0, 9.0], dtype=torch.float64))
    torch.testing.assert_close(rescale.scaling, torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    layer = IntegerLinearLayer("Conv", w_int, rescale, range_in=4, range_out=6)
    x_int = torch.tensor([2, 4], dtype=torch.uint8).view(1, 2, 1, 1)
    assert layer.accumulate(x_int).view(2).tolist() == [10.0, 10.0]
    y = layer(x_int)
    assert y.dtype == torch.uint8
    assert y.view(2).tolist() == [4, 3]


@pytest.mark.parametrize(
    "r_w, mode, w_s, w_q0, w_int0, acc0, level0",
    [
        # binary: w_q in {-1, 1}; z0 = 0.2 - 0.8 = -0.6, y0 = 1.1 -> 2.2 -> 2
        (1, "Default", 1, [1.0, -1.0], [-1, 1], 153, 2),
        # even R = 4: w_q = (k - 2)/2; z0 = 0.1 - 0.8, y0 = 1.2 -> 2.4 -> 2
        (4, "Default", 2, [0.5, -1.0], [-1, 2], 357, 2),
        # N2D2's 4-bit case: w_q = (2k - 15)/15; z0 = (2.2 - 10.4)/15, y0 -> 2.0933 -> 2
        (15, "Default", 15, [11 / 15, -13 / 15], [-11, 13], 2091, 2),
        # 8-bit Symmetric: w_q = k/127; z0 = 20/127 - 0.8, y0 -> 2.2850 -> 2
        (255, "Symmetric", 127, [100 / 127, -1.0], [-100, 127], 20808, 2),
        # 4-bit Symmetric: w_q = k/7; z0 = -0.6/7 - 0.8 * 5/7 = -4.6/7, y0 -> 2.3143 -> 2
        (15, "Symmetric", 7, [-3 / 7, -5 / 7], [3, 5], 1173, 2),
    ],
)
def test_conv_bn_act_by_hand_weight_ranges(r_w, mode, w_s, w_q0, w_int0, acc0, level0) -> None:
    """1x1 conv, network input x_int = [51, 204] (x = [0.2, 0.8], domain (1, 255)), output
    (alpha 2, R 4), worked out on paper for several weight grids.
    ch0: gamma -2, var 3, eps 1 -> f = -1 (sg -1); beta 1, mu -0.5, b 0: y0 = 0.5 - z0;
         B' = -(0.5 / -1) * 255 * W_s = 127.5 W_s, C' = 510 W_s, S' = 2 / (255 W_s).
    ch1: w_q = [1, 1], gamma 2, var 3 -> f = 1; beta 1.5, mu 0, b 0.25: y1 = 2.75, clipped
         to alpha: level 4; B' = 1.75 * 255 * W_s = 446.25 W_s, C' = 510 W_s."""
    w_q = torch.tensor([w_q0, [1.0, 1.0]], dtype=torch.float64).view(2, 2, 1, 1)
    f = bn_factor(torch.tensor([-2.0, 2.0]), torch.tensor([3.0, 3.0]), eps=1.0)
    assert f.tolist() == [-1.0, 1.0]
    assert weight_scale(r_w, mode) == w_s
    w_int = integer_weights(w_q, w_s, torch.sign(f))
    assert w_int.view(2, 2).tolist() == [w_int0, [w_s, w_s]]
    rescale = conv_bn_act_rescale(
        f,
        torch.tensor([1.0, 1.5]),
        torch.tensor([-0.5, 0.0]),
        torch.tensor([0.0, 0.25]),
        alpha_in=1.0,
        range_in=255,
        alpha_out=2.0,
        range_out=4,
        w_s=w_s,
    )
    expected = torch.tensor([127.5 * w_s, 446.25 * w_s], dtype=torch.float64)
    torch.testing.assert_close(rescale.bias, expected)
    torch.testing.assert_close(rescale.clip, torch.full((2,), 510.0 * w_s, dtype=torch.float64))
    scaling = torch.full((2,), 2 / (255 * w_s), dtype=torch.float64)
    torch.testing.assert_close(rescale.scaling, scaling)
    layer = IntegerLinearLayer("Conv", w_int, rescale, range_in=255, range_out=4)
    x_int = torch.tensor([51, 204], dtype=torch.uint8).view(1, 2, 1, 1)
    assert layer.accumulate(x_int).view(2).tolist() == [acc0, 255 * w_s]
    y = layer(x_int)
    assert y.dtype == torch.uint8
    assert y.view(2).tolist() == [level0, 4]


def test_dead_channel_outputs_quantized_beta() -> None:
    """var <= 1e-12: f = 0, W' = 0 and the output is the constant q(beta)."""
    f = bn_factor(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), eps=1e-5)
    assert f[0].item() == 0.0
    rescale = conv_bn_act_rescale(
        f,
        torch.tensor([1.3, 0.0]),
        torch.zeros(2),
        torch.zeros(2),
        alpha_in=1.0,
        range_in=255,
        alpha_out=2.0,
        range_out=15,
        w_s=15,
    )
    acc = torch.zeros(1, 2, 1, 1)
    # q(1.3) with alpha 2, R 15: round(1.3 * 7.5) = round(9.75) = 10
    assert requantize(acc, rescale, 15)[0, 0].item() == 10


# --- random blocks against the float64 fake-quant reference -------------------------------------
def _reference_block(x_int, w_q, b, gamma, beta, mean, var, eps, a_in, r_in, a_out, r_out):
    x = x_int.double() * (a_in / r_in)
    z = F.conv2d(x, w_q.double(), b.double(), padding=1)
    shape = (1, -1, 1, 1)
    y = (z - mean.view(shape)) * (gamma / torch.sqrt(var + eps)).view(shape) + beta.view(shape)
    return torch.round(sat_act(y, a_out, r_out) * (r_out / a_out))


@pytest.mark.parametrize(
    "r_w, mode",
    [
        (255, "Default"),
        (15, "Default"),
        (4, "Default"),
        (1, "Default"),
        (15, "Symmetric"),
        (255, "Symmetric"),
    ],
)
@pytest.mark.parametrize("r_in, r_out", [(255, 15), (15, 15), (7, 255)])
def test_conv_bn_act_matches_fake_quant(r_w: int, mode: str, r_in: int, r_out: int) -> None:
    g = torch.Generator().manual_seed(r_w * 1000 + r_in + r_out)
    c_in, c_out = 5, 8
    w_q = sat_weights(torch.randn(c_out, c_in, 3, 3, generator=g), r_w, mode)
    b = torch.randn(c_out, generator=g, dtype=torch.float64) * 0.3
    gamma = torch.randn(c_out, generator=g, dtype=torch.float64)  # about half negative
    gamma[0] = -abs(gamma[0].item())
    beta = torch.randn(c_out, generator=g, dtype=torch.float64)
    mean = torch.randn(c_out, generator=g, dtype=torch.float64)
    var = torch.rand(c_out, generator=g, dtype=torch.float64) * 4 + 0.1
    a_in, a_out, eps = 2.7, 3.3, 1e-5
    x_int = torch.randint(0, r_in + 1, (3, c_in, 6, 6), generator=g)

    f = bn_factor(gamma, var, eps)
    w_s = weight_scale(r_w, mode)
    w_int = integer_weights(w_q, w_s, torch.sign(f))
    rescale = conv_bn_act_rescale(
        f, beta, mean, b, alpha_in=a_in, range_in=r_in, alpha_out=a_out, range_out=r_out, w_s=w_s
    )
    layer = IntegerLinearLayer(
        "Conv", w_int, rescale, range_in=r_in, range_out=r_out, padding=(1, 1)
    )
    y = layer(x_int.to(torch.uint8))
    expected = _reference_block(
        x_int, w_q, b, gamma, beta, mean, var, eps, a_in, r_in, a_out, r_out
    )
    assert y.dtype == torch.uint8
    assert int(y.max()) <= r_out
    assert torch.equal(y.long(), expected.long())
    assert expected.max() > 0 and (expected == 0).any()  # both clip ends exercised


def test_accumulator_dtype_bound() -> None:
    small = torch.full((2, 16, 5, 5), 15, dtype=torch.int8)  # 400 * 15 * 255 < 2^24
    assert accumulator_dtype(small, 255) == torch.float32
    big = torch.full((2, 16, 5, 5), 255, dtype=torch.int16)  # 400 * 255 * 255 > 2^24
    assert accumulator_dtype(big, 255) == torch.float64


def test_float64_accumulator_is_exact_beyond_float32() -> None:
    w = torch.full((1, 300), 255, dtype=torch.int16)
    layer = IntegerLinearLayer(
        "Fc",
        w,
        Rescale(torch.zeros(1, dtype=torch.float64), None, torch.ones(1, dtype=torch.float64)),
        range_in=255,
        range_out=None,
    )
    x = torch.full((1, 300), 255, dtype=torch.uint8)
    x[0, 0] = 254
    assert layer.acc_dtype == torch.float64
    # 299 * 255 * 255 + 254 * 255 = 19507245 (odd, above 2^24: not representable in float32)
    assert layer.accumulate(x).flatten().item() == 19507245


# --- Fc -----------------------------------------------------------------------------------------
def test_fc_float_logits_and_quantized_output() -> None:
    g = torch.Generator().manual_seed(3)
    w_q = sat_weights(torch.randn(4, 10, generator=g), 255, "Default")
    n_out = 4
    s = torch.sqrt(w_q.var(unbiased=True) * n_out).item()  # ApplyScaling divisor
    b = torch.randn(4, generator=g, dtype=torch.float64)
    a_in, r_in = 1.5, 15
    x_int = torch.randint(0, r_in + 1, (6, 10), generator=g)
    reference = (x_int.double() * a_in / r_in) @ (w_q / s).T + b
    w_s = weight_scale(255)
    w_int = integer_weights(w_q, w_s)
    logits = IntegerLinearLayer(
        "Fc",
        w_int,
        fc_rescale(b, alpha_in=a_in, range_in=r_in, w_s=w_s, weight_scaling=s),
        range_in=r_in,
        range_out=None,
    )(x_int.to(torch.uint8))
    assert logits.dtype == torch.float32
    assert logits.shape == (6, 4, 1, 1)
    torch.testing.assert_close(logits.double().flatten(1), reference, rtol=1e-6, atol=1e-6)
    a_out, r_out = 0.8, 15
    quantized = IntegerLinearLayer(
        "Fc",
        w_int,
        fc_rescale(
            b,
            alpha_in=a_in,
            range_in=r_in,
            w_s=w_s,
            weight_scaling=s,
            alpha_out=a_out,
            range_out=r_out,
        ),
        range_in=r_in,
        range_out=r_out,
    )(x_int.to(torch.uint8))
    expected = torch.round(sat_act(reference, a_out, r_out) * r_out / a_out)
    assert torch.equal(quantized.long().flatten(1), expected.long())


# --- residual Sum -------------------------------------------------------------------------------
def test_elemwise_sum_rescales_second_branch() -> None:
    g = torch.Generator().manual_seed(4)
    (a0, r0), (a1, r1), (a_out, r_out) = (2.0, 15), (3.1, 15), (4.2, 15)
    i0 = torch.randint(0, r0 + 1, (2, 3, 4, 4), generator=g)
    i1 = torch.randint(0, r1 + 1, (2, 3, 4, 4), generator=g)
    coefficients, rescale = elemwise_rescale([(a0, r0), (a1, r1)], alpha_out=a_out, range_out=r_out)
    assert coefficients[0] == 1.0
    assert coefficients[1] == pytest.approx((r0 / a0) * (a1 / r1))
    assert rescale.clip.item() == pytest.approx(a_out * r0 / a0)
    assert rescale.scaling.item() == pytest.approx((r_out / a_out) / (r0 / a0))
    y = IntegerElemWise(coefficients, rescale, r_out)(i0.to(torch.uint8), i1.to(torch.uint8))
    float_sum = i0.double() * a0 / r0 + i1.double() * a1 / r1
    expected = torch.round(sat_act(float_sum, a_out, r_out) * r_out / a_out)
    assert torch.equal(y.long(), expected.long())


def test_branch_rescale_by_hand() -> None:
    """One channel: x_int = 4 of (alpha 2, R 10), W' = 3 (w_q = 3/5, W_s 5, s = 2), b = 0.5;
    BN gamma -2, var 3 (eps 1), mean 0.25, beta 1; Sum output (alpha 4, R 8): 2 units/float.
    Conv z = 0.6/2 * 0.8 + 0.5 = 0.74; BN = -2/2 * (0.74 - 0.25) + 1 = 0.51 -> 1.02 units.
    acc = 12: S' = -1 * 2 / (10 * 5 * 2) * 2 = -0.04, B' = (1 + -1 * 0.25) * 2 = 1.5."""
    gamma, var, eps = torch.tensor([-2.0]), torch.tensor([3.0]), 1.0
    f = gamma / torch.sqrt(var + eps)
    rescale = branch_rescale(
        f, torch.tensor([1.0]), torch.tensor([0.25]), torch.tensor([0.5]),
        alpha_in=2.0, range_in=10, w_s=5, weight_scaling=2.0, alpha_out=4.0, range_out=8,
    )
    assert rescale.clip is None
    assert rescale.scaling.item() == pytest.approx(-0.04)
    assert rescale.bias.item() == pytest.approx(1.5)
    layer = IntegerBranchLayer("Conv", torch.tensor([[[[3]]]], dtype=torch.int8), rescale,
                               range_in=10)
    y = layer(torch.tensor([[[[4]]]], dtype=torch.uint8))
    assert y.dtype == torch.float64 and y.item() == pytest.approx(1.02)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.5, 2.0)])
def test_sum_of_branch_and_shortcut_matches_fake_quant(weights) -> None:
    """Conv + BN (no QAct, a negative gamma, a dead channel) + an integer shortcut into a SAT
    Sum, against the plain float64 fake-quant formulas."""
    g = torch.Generator().manual_seed(6)
    (a_in, r_in), (a_sc, r_sc), (a_out, r_out), r_w = (3.0, 15), (2.5, 7), (5.0, 15), 15
    x_int = torch.randint(0, r_in + 1, (4, 3, 6, 6), generator=g)
    shortcut = torch.randint(0, r_sc + 1, (4, 5, 6, 6), generator=g)
    w_q = sat_weights(torch.randn(5, 3, 3, 3, generator=g), r_w, "Default")
    gamma = torch.tensor([1.3, -0.7, 0.9, 2.0, -1.1])
    beta = torch.randn(5, generator=g)
    mean, var = torch.randn(5, generator=g), torch.rand(5, generator=g) + 0.2
    var[3] = 0.0  # dead channel: BN multiplies by gamma / sqrt(eps)
    eps = 1e-5
    f = gamma / torch.sqrt(var + eps)
    w_s = weight_scale(r_w)
    rescale = branch_rescale(f, beta, mean, torch.zeros(5), alpha_in=a_in, range_in=r_in,
                             w_s=w_s, alpha_out=a_out, range_out=r_out)
    branch = IntegerBranchLayer("Conv", integer_weights(w_q, w_s), rescale, range_in=r_in,
                                padding=(1, 1))
    coefficients, sum_rescale = elemwise_rescale(
        [(a_sc, r_sc), (a_out, r_out)], alpha_out=a_out, range_out=r_out,
        weights=list(weights), reference=(a_out, r_out),
    )
    y = IntegerElemWise(coefficients, sum_rescale, r_out)(
        shortcut.to(torch.uint8), branch(x_int.to(torch.uint8))
    )
    z = F.conv2d(x_int.double() * a_in / r_in, w_q, padding=1)
    bn = F.batch_norm(z, mean.double(), var.double(), gamma.double(), beta.double(), eps=eps)
    float_sum = weights[0] * shortcut.double() * a_sc / r_sc + weights[1] * bn
    expected = torch.round(sat_act(float_sum, a_out, r_out) * r_out / a_out)
    assert y.dtype == torch.uint8
    assert torch.equal(y.long(), expected.long())
    assert 0 < int(expected.count_nonzero()) < expected.numel()  # the clamp is exercised
    assert int((expected == r_out).sum()) > 0


def test_quantize_input() -> None:
    x = torch.tensor([0.0, 1.0, 0.5, 1.2, -0.1, 3 / 255])
    assert quantize_input(x).tolist() == [0, 255, 128, 255, 0, 3]


def test_float32_accumulator_equals_int64_arithmetic() -> None:
    """Just below the 2^24 bound the float32 accumulator still equals integer arithmetic:
    conv as int64 patches times int64 weights (no float anywhere). W' = +-127 on 40 channels:
    sum|W'| * 255 = 360 * 127 * 255 = 11,658,600 (2^23 < it < 2^24)."""
    g = torch.Generator().manual_seed(9)
    signs = torch.randint(0, 2, (4, 40, 3, 3), generator=g) * 2 - 1
    signs[0] = 1  # output 0 on the all-255 image: the bound itself
    w_int = (signs * 127).to(torch.int8)
    x_int = torch.randint(200, 256, (2, 40, 7, 7), generator=g).to(torch.uint8)
    x_int[0] = 255
    layer = IntegerLinearLayer(
        "Conv",
        w_int,
        Rescale(torch.zeros(4, dtype=torch.float64), None, torch.ones(4, dtype=torch.float64)),
        range_in=255,
        range_out=None,
    )
    assert layer.acc_dtype == torch.float32
    patches = torch.stack(
        [x_int[:, :, i : i + 5, j : j + 5].long() for i in range(3) for j in range(3)], dim=2
    )  # [N, C, kH*kW, 5, 5]
    expected = torch.einsum("nckhw,ock->nohw", patches, w_int.long().view(4, 40, 9))
    assert int(expected.max()) == 11_658_600 and int((expected > 2**23).sum()) > 1
    assert torch.equal(layer.accumulate(x_int).long(), expected)


def test_tf32_exactness_bound() -> None:
    """TF32 keeps 11 significant bits: 2047 and 2048 survive, 2049 does not, so a float32
    accumulation on CUDA stays exact only for operands up to 2^11 (R_in and W_s <= 255 are)."""
    def tf32(v: float) -> float:  # round to a 10-bit mantissa (nearest, ties to even)
        t = torch.tensor([v], dtype=torch.float32).view(torch.int32)
        t = ((t + 0x0FFF + ((t >> 13) & 1)) >> 13) << 13
        return float(t.view(torch.float32))

    assert [tf32(v) for v in (255.0, 2047.0, 2048.0)] == [255.0, 2047.0, 2048.0]
    assert tf32(2049.0) != 2049.0
    unit = Rescale(torch.zeros(1, dtype=torch.float64), None, torch.ones(1, dtype=torch.float64))
    small = IntegerLinearLayer("Fc", torch.full((1, 4), 255, dtype=torch.int16), unit,
                               range_in=255, range_out=None)
    wide = IntegerLinearLayer("Fc", torch.full((1, 4), 255, dtype=torch.int16), unit,
                              range_in=15 * 49 * 4, range_out=None)  # a 14x14 pool sum of R=15
    assert small._tf32_exact() and not wide._tf32_exact()


def test_zero_points_in_and_out_by_hand() -> None:
    """Input levels q with zero point 3 stand for (q - 3) * s; the layer subtracts it before
    the conv (so its zero padding is the value 0, i.e. level 3 pads as 0 after subtraction),
    and the output levels get their own zero point 2 added after rounding."""
    # 1x1 input channel, 3x3 levels, zero point 3, scale 0.5 -> values (q - 3) / 2
    q_in = torch.tensor([[[[3, 4, 5], [6, 3, 1], [0, 3, 7]]]], dtype=torch.uint8)
    w_int = torch.ones(1, 1, 3, 3, dtype=torch.int8)
    # float reference: a 3x3 all-ones conv (padding 1) on (q - 3) / 2, bias 0.25, output grid
    # scale 0.5, zero point 2, levels [0, 9]: q_out = clamp(round(y / 0.5) + 2, 0, 9)
    x = (q_in.double() - 3) / 2
    y = F.conv2d(x, w_int.double(), torch.tensor([0.25], dtype=torch.float64), padding=1)
    expected = torch.clamp(torch.round(y / 0.5) + 2, 0, 9)
    # acc in input level units: y = acc * 0.5 + 0.25 -> levels (acc + 0.5) * 0.5 / 0.5
    rescale = Rescale(bias=torch.tensor([0.5], dtype=torch.float64),
                      clip=torch.tensor([7 / 1.0], dtype=torch.float64),
                      scaling=torch.tensor([1.0], dtype=torch.float64))
    layer = IntegerLinearLayer("Conv", w_int, rescale, range_in=4, range_out=7, low_out=-2,
                               zero_point_out=2, zero_point_in=3, padding=(1, 1))
    out = layer(q_in)
    assert out.dtype == torch.uint8
    assert torch.equal(out.double(), expected)
    # requantize alone: levels below the zero point are kept when low < 0
    acc = torch.tensor([[-3.4, -1.6, 0.4, 9.0]], dtype=torch.float64)[:, :, None, None]
    one = torch.ones(4, dtype=torch.float64)
    y = requantize(acc, Rescale(0 * one, 5 * one, one), 5, low=-2, zero_point=2)
    assert y.flatten().tolist() == [0, 0, 2, 7]
