"""Fixed-point requantization of integer-arithmetic-only inference (Jacob et al. 2018, sec. 2.2).

A real multiplier M (e.g. s_x * s_w / s_y, usually in (0, 1)) is held as a 32-bit integer
M0 in [2^30, 2^31) and a right shift n: M ~= M0 * 2^-n (relative error <= 2^-31). An int32
accumulator is requantized with integer operations only: the exact int64 product acc * M0, one
rounding right shift by n (round half away from zero), the output zero point, a clamp.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

M0_BITS = 31                       # M0 in [2^30, 2^31): a positive int32
MAX_SHIFT = 62                     # |acc * M0| < 2^31 * 2^31 = 2^62 in int64


def quantize_multiplier(m: float) -> tuple[int, int]:
    """(M0, n) with M0 * 2^-n the nearest such value to ``m`` (sign carried by M0; 0 -> (0, 0)).

    frexp: |m| = f * 2^e with f in [0.5, 1); M0 = round(f * 2^31), n = 31 - e.
    """
    if m == 0:
        return 0, 0
    if not math.isfinite(m):
        raise ValueError(f"cannot requantize by a non-finite multiplier {m}")
    f, e = math.frexp(abs(m))
    m0 = round(f * (1 << M0_BITS))
    if m0 == 1 << M0_BITS:           # f rounded up to 1.0
        m0, e = m0 >> 1, e + 1
    n = M0_BITS - e
    if n < 0:
        raise ValueError(f"multiplier {m} >= 2^31 cannot be held as M0 * 2^-n")
    if n > MAX_SHIFT:                # below 2^-31: every int32 accumulator maps to 0 or +-1
        m0, n = round(abs(m) * 2.0 ** MAX_SHIFT), MAX_SHIFT
    return (m0 if m > 0 else -m0), n


def quantize_multipliers(m: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`quantize_multiplier` of each value of ``m`` [C]: (M0 int64 [C], n int64 [C])."""
    pairs = [quantize_multiplier(float(v)) for v in m.reshape(-1).tolist()]
    m0 = torch.tensor([p[0] for p in pairs], dtype=torch.int64).reshape(m.shape)
    n = torch.tensor([p[1] for p in pairs], dtype=torch.int64).reshape(m.shape)
    return m0, n


def rounding_shift(p: Tensor, n: Tensor) -> Tensor:
    """round(p / 2^n), half away from zero, on int64 tensors (``n`` >= 0 broadcasts on p)."""
    half = torch.where(n > 0, torch.ones_like(n) << (n - 1).clamp(min=0), torch.zeros_like(n))
    magnitude = (p.abs() + half) >> n
    return torch.where(p < 0, -magnitude, magnitude)


def requantize(acc: Tensor, m0: Tensor, n: Tensor, zero_point: Tensor | int,
               qmin: int, qmax: int, axis: int = 1) -> Tensor:
    """clamp(zero_point + round(acc * M0 * 2^-n), qmin, qmax) in integers only.

    ``acc``: int32/int64 accumulators [B, C, ...]; ``m0``/``n``/``zero_point``: 0-dim (per
    layer) or [C] (per channel, on ``axis``). Returns int64.
    """
    def along(t: Tensor | int) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.int64, device=acc.device)
        if t.dim() == 0:
            return t
        shape = [1] * acc.dim()
        shape[axis] = -1
        return t.reshape(shape)

    p = acc.to(torch.int64) * along(m0)
    return (rounding_shift(p, along(n)) + along(zero_point)).clamp_(qmin, qmax)


class FixedPointRequantizer(torch.nn.Module):
    """The integer-only rescale of a fused layer (Jacob et al.): int32 bias B = round(B'),
    multiplier S' as (M0, n) per output channel, output zero point; replaces the float64
    y = round(clamp(acc + B', 0, C') * S') of n2q.quant.integer.requantize (the clip C' is
    the top level R over S', so the final clamp does its work)."""

    def __init__(self, bias: Tensor, scaling: Tensor, low: int, high: int,
                 zero_point: int) -> None:
        super().__init__()
        # a bias beyond int32 (a channel whose input range is ~0) only saturates the output:
        # clamped, |acc + B| < 2^32 keeps (acc + B) * M0 within int64
        b = torch.round(bias.double()).clamp(-(2 ** 31 - 1), 2 ** 31 - 1)
        m0, n = quantize_multipliers(scaling.double())
        self.register_buffer("bias", b.to(torch.int64))
        self.register_buffer("m0", m0)
        self.register_buffer("shift", n)
        self.low, self.high, self.zero_point = low, high, zero_point

    def files(self, stem: str) -> dict[str, Tensor]:
        """Weights-folder files: the int32 bias, M0 and the right shift n per channel."""
        # float64: written with 17 digits, every int32 / shift exactly
        return {f"{stem}_biases_int32.syntxt": self.bias.double(),
                f"{stem}_M0.syntxt": self.m0.double(), f"{stem}_shift.syntxt": self.shift.double()}

    def forward(self, acc: Tensor) -> Tensor:
        """acc [N, O, ...] exact integers (any dtype) -> int64 levels in [low, high] + zp."""
        shape = (1, -1) + (1,) * (acc.dim() - 2)
        total = torch.round(acc).to(torch.int64) + self.bias.view(shape)
        return requantize(total, self.m0, self.shift, self.zero_point,
                          self.low + self.zero_point, self.high + self.zero_point)


def use_fixed_point(fused: torch.nn.Module) -> list[str]:
    """Switch every fused layer with an integer output to :class:`FixedPointRequantizer`;
    returns the names of the nodes switched."""
    switched = []
    for name, layer in fused.cells.items():
        if getattr(layer, "range_out", None) is None or not hasattr(layer, "fixed"):
            continue
        layer.fixed = FixedPointRequantizer(layer.bias, layer.scaling, layer.low_out,
                                            layer.range_out, layer.zero_point_out)
        switched.append(name)
    return switched
