"""From a quantizer's integer grid to the ONNX QuantizeLinear/DequantizeLinear form.

A grid (n2q.quant.protocol.IntegerGrid) says x = (q - zero_point) * scale with q in
{qmin, qmin + stride, ..., qmax}. ONNX's DequantizeLinear computes (q - zero_point) * scale too,
on int8/uint8 (opset 13) or int16/uint16 (opset 21), with an INTEGER zero point of the same
type. The mapping:

1. a fractional zero point (SAT's Default weights written as n in 0..R with zero point R/2) is
   made integral by multiplying the integers and the zero point by k and dividing the scale
   by k (k = 2 for a half-integer): x = (k q - k z) * (s / k) is the same value;
2. the stored integers are shifted to zero point 0 whenever they then fit the type (x =
   (q - z) * s = v * s with v = q - z): TensorRT's convention, symmetric with zero point 0;
3. the narrowest type that holds every stored integer is chosen, in the order int8, uint8
   (opset 13), int16, uint16 (opset 21). SAT's 8-bit Default weights, the odd integers
   -255..255, need int16: 256 levels, but a zero point of 127.5 in uint8 is not allowed.
   A grid that needs more than 16 bits has no standard QDQ form: None (the caller writes
   float constants for weights and refuses activations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from n2q.quant.protocol import IntegerGrid

# (name, numpy type, ONNX TensorProto data type, minimum opset), narrowest first
QDQ_TYPES = (
    ("int8", np.int8, 3, 13),
    ("uint8", np.uint8, 2, 13),
    ("int16", np.int16, 5, 21),
    ("uint16", np.uint16, 4, 21),
)
_MAX_MULTIPLIER = 16     # a zero point z with k*z integral for some k <= 16 (k = 2: half)


@dataclass(frozen=True)
class QdqForm:
    """One tensor's QDQ parameters: stored integers v in [vmin, vmax] of ``type_name``,
    x = (v - zero_point) * scale; ``scale`` float32 and ``zero_point`` of the stored type,
    0-dim (per tensor) or [C] (per channel on ``axis``)."""

    type_name: str
    np_type: type
    onnx_type: int
    opset: int
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    vmin: int               # the grid's extreme stored integers (over all channels)
    vmax: int
    multiplier: int = 1     # k of step 1 (1: the grid's own integers)
    notes: tuple[str, ...] = field(default=())

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim > 0

    @property
    def zero_points_all_zero(self) -> bool:
        return not np.any(self.zero_point)

    def describe(self) -> str:
        """``int8 [-7, 7] scale 0.0667 zp 0`` (per-channel: the scale range)."""
        s = self.scale.astype(np.float64)
        scale = f"{s.min():.6g}..{s.max():.6g} on axis {self.axis}" if self.per_channel \
            else f"{float(s):.6g}"
        zp = "0" if self.zero_points_all_zero else (
            f"{self.zero_point.min()}..{self.zero_point.max()}" if self.per_channel
            else str(int(self.zero_point)))
        return f"{self.type_name} [{self.vmin}, {self.vmax}] scale {scale} zp {zp}"


def _multiplier(zero_point: np.ndarray) -> int | None:
    """Smallest k with k * zero_point integral (1 for integer zero points)."""
    for k in range(1, _MAX_MULTIPLIER + 1):
        scaled = zero_point * k
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-9):
            return k
    return None


def qdq_form(grid: IntegerGrid, values: torch.Tensor | None = None) -> QdqForm | None:
    """The exact standard QDQ form of ``grid``, or None when none exists (over 16 bits, or a
    zero point no small multiplier makes integral).

    ``values``: for weights, the fake-quantized weight the forward uses; its integers widen
    the stored range when they leave the grid (a masked weight is 0, which SAT's odd-only
    grid does not hold but int8 does)."""
    zp = grid.zero_point.numpy().astype(np.float64)
    scale = grid.scale.numpy().astype(np.float64)
    k = _multiplier(zp)
    if k is None:
        return None
    zp_k = np.round(zp * k).astype(np.int64)          # integral now
    # stored integers without shift: k*q in [k*qmin, k*qmax]; with shift: k*q - k*z
    lo, hi = k * grid.qmin, k * grid.qmax
    if values is not None and values.numel():
        q = grid.integers(values)                      # float64 integers, grid units
        lo, hi = min(lo, int(q.min()) * k), max(hi, int(q.max()) * k)
    shifted = (lo - int(zp_k.max()), hi - int(zp_k.min()))
    notes = []
    if k > 1:
        notes.append(f"zero point {_fmt_zp(zp)} is not an integer: integers and zero point "
                     f"x{k}, scale /{k}")
    for name, np_type, onnx_type, opset in QDQ_TYPES:
        info = np.iinfo(np_type)
        for zero, (vmin, vmax) in ((True, shifted), (False, (lo, hi))):
            zp_fits = zero or (info.min <= zp_k.min() and zp_k.max() <= info.max)
            if zp_fits and info.min <= vmin and vmax <= info.max:
                zero_point = np.zeros_like(zp_k) if zero else zp_k
                return QdqForm(name, np_type, onnx_type, opset,
                               (scale / k).astype(np.float32), zero_point.astype(np_type),
                               grid.axis if grid.per_channel else None, vmin, vmax, k,
                               tuple(notes))
    return None


def _fmt_zp(zp: np.ndarray) -> str:
    return f"{float(zp):g}" if zp.ndim == 0 else f"{zp.min():g}..{zp.max():g}"


def stored_integers(form: QdqForm, grid: IntegerGrid, values: torch.Tensor) -> np.ndarray:
    """``values`` (fake-quantized, float units) as the stored integers of ``form``:
    v = k*q - (k*z - zero_point), in the stored type. Raises ValueError when the values are
    not on the grid (the quantizer's grid does not describe its output)."""
    q = grid.integers(values)
    back = grid.dequantize(q)
    tolerance = 1e-5 * max(1.0, float(values.detach().abs().max())) if values.numel() else 0
    error = float((back - values.double()).abs().max()) if values.numel() else 0.0
    if error > tolerance:
        raise ValueError(f"the values are not on the quantizer's integer grid (off by up to "
                         f"{error:.3g})")
    k = form.multiplier
    zp_k = torch.round(grid.zero_point * k)
    zero = torch.as_tensor(form.zero_point.astype(np.int64), dtype=torch.float64)
    offset = zp_k - zero                                 # 0-dim or [C]
    if offset.dim():
        shape = [1] * q.dim()
        shape[form.axis] = -1
        offset = offset.reshape(shape)
    v = q * k - offset
    return v.numpy().astype(form.np_type)


def grid_range(grid: IntegerGrid) -> tuple[float, float]:
    """The float range the grid covers, over all channels: ((qmin - z) * s, (qmax - z) * s),
    rounded to float32 (the precision of the exported scales and of n2q's tensors)."""
    lo = grid.dequantize(torch.tensor(float(grid.qmin))).reshape(-1)
    hi = grid.dequantize(torch.tensor(float(grid.qmax))).reshape(-1)
    both = torch.cat([lo, hi]).float()
    return float(both.min()), float(both.max())


def level_bits(grid: IntegerGrid) -> int:
    """Bits of the grid's levels, ceil(log2(levels)): what the method quantizes to (SAT's
    Range=15 weights, the 16 odd integers -15..15, are 4-bit although int8 stores them)."""
    return max(math.ceil(math.log2(grid.levels)), 1)


def grid_summary(grid: IntegerGrid) -> str:
    """``[-15, 15] step 2, scale 0.0667, zp 0`` for the report."""
    s = grid.scale
    scale = f"{float(s.min()):.6g}..{float(s.max()):.6g} (per channel)" if grid.per_channel \
        else f"{float(s):.6g}"
    zp = grid.zero_point
    zps = (f"{float(zp.min()):g}..{float(zp.max()):g}" if zp.dim() and zp.min() != zp.max()
           else f"{float(zp.reshape(-1)[0]):g}")
    step = f" step {grid.stride}" if grid.stride > 1 else ""
    return (f"[{grid.qmin}, {grid.qmax}]{step} ({grid.levels} levels, {level_bits(grid)} bits), "
            f"scale {scale}, zp {zps}")


def needs_clamp(form: QdqForm, grid: IntegerGrid) -> bool:
    """True unless the stored type saturates exactly at the grid's ends on every channel:
    QuantizeLinear saturates to the TYPE's range, so a narrower grid (4-bit in int8) is
    clamped to its own float range first."""
    info = np.iinfo(form.np_type)
    k = form.multiplier
    offset = np.round(grid.zero_point.numpy() * k) - form.zero_point.astype(np.float64)
    lo, hi = k * grid.qmin - offset, k * grid.qmax - offset
    return not (np.all(lo == info.min) and np.all(hi == info.max))
