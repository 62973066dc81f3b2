"""The integer layers of a fused network (fusion.md): Conv/Fc on integer weights with exact
accumulation and a per-channel rescale, residual branches, residual Sums (n2q.quant.integer
holds their formulas).

An input may carry a zero point z_in (levels k for the value (k - z_in) * scale): the layer
subtracts it before accumulating, exact in integers and right at zero padding too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from n2q.quant.integer import (
    TF32_EXACT,
    Rescale,
    accumulator_dtype,
    activation_dtype,
    requantize,
    to_float_units,
)


class IntegerLinearLayer(nn.Module):
    """A fused Conv or Fc: integer weights W', exact accumulation, per-channel rescale.

    kind "Conv": weight [O, C/groups, kH, kW], input [N, C, H, W]; kind "Fc": weight [O, CHW],
    input flattened to [N, CHW], output [N, O, 1, 1]. range_out None: float output (the
    logits), then `activation` (a float module, identity when None) is applied. range_in: the
    largest |level - zero_point_in| of the input; the output levels are [low_out, range_out]
    plus zero_point_out (n2q.quant.integer.requantize).
    """

    def __init__(
        self,
        kind: str,
        weight: Tensor,
        rescale: Rescale,
        *,
        range_in: float,
        range_out: int | None,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        activation: nn.Module | None = None,
        low_out: int = 0,
        zero_point_out: int = 0,
        zero_point_in: int = 0,
    ) -> None:
        super().__init__()
        if kind not in ("Conv", "Fc"):
            raise ValueError(f"integer layer kind must be Conv or Fc, got {kind!r}")
        self.kind = kind
        self.range_in = range_in
        self.range_out = range_out
        self.low_out, self.zero_point_out = low_out, zero_point_out
        self.zero_point_in = zero_point_in
        self.fixed: nn.Module | None = None   # n2q.quant.fixedpoint.use_fixed_point
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.activation = activation if activation is not None else nn.Identity()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", rescale.bias)
        self.register_buffer("scaling", rescale.scaling)
        self.register_buffer("clip", rescale.clip if rescale.clip is not None else None)
        self.acc_dtype = accumulator_dtype(weight, range_in)
        self._max_weight = int(weight.long().abs().max()) if weight.numel() else 0
        # Float copy of the integer weights in the accumulator dtype, made once (not saved).
        self.register_buffer("_weight_acc", weight.to(self.acc_dtype), persistent=False)

    @property
    def type(self) -> str:
        """The cell type it replaces ("Conv" / "Fc"): weights writer and graph drawer use it."""
        return self.kind

    @property
    def rescale(self) -> Rescale:
        return Rescale(bias=self.bias, clip=self.clip, scaling=self.scaling)

    # Weights-folder protocol of n2q.io.weights: the writer saves `weight` and `bias` (B') as a
    # Conv / Fc cell's `_weights` / `_biases`, and these extra per-channel files.
    def files(self, stem: str) -> dict[str, Tensor]:
        files = {f"{stem}_scaling.syntxt": self.scaling}
        if self.clip is not None:
            files[f"{stem}_clip.syntxt"] = self.clip
        if self.fixed is not None:      # written for integer deployment, derived from B', S'
            files.update(self.fixed.files(stem))
        return files

    def load_file(self, name: str, tensor: Tensor) -> None:
        buffer = self.scaling if name.endswith("_scaling.syntxt") else self.clip
        buffer.copy_(tensor.reshape(buffer.shape).to(buffer.dtype))

    def accumulate(self, x_int: Tensor) -> Tensor:
        """acc = conv(x_int - z_in, W') (or (x_int - z_in) @ W'^T), exact integers in
        acc_dtype."""
        weight = self._weight_acc
        if weight.is_cuda and weight.dtype == torch.float32 and not self._tf32_exact():
            weight = weight.double()  # TF32 operands keep 11 significant bits only
        x = x_int.to(weight.dtype)
        if self.zero_point_in:
            x = x - self.zero_point_in
        if self.kind == "Fc":  # [N, O, 1, 1] like the Fc cell
            return F.linear(x.flatten(1), weight)[:, :, None, None]
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def _tf32_exact(self) -> bool:
        """On CUDA a float32 conv / matmul may run in TF32 (torch's allow_tf32 switches): its
        operands are rounded to 11 significant bits, which leaves integers up to 2^11 exact
        (activations R_in <= 255 and W_s <= 255 are), products and sums staying float32."""
        return self.range_in <= TF32_EXACT and self._max_weight <= TF32_EXACT

    def forward(self, x_int: Tensor) -> Tensor:
        acc = self.accumulate(x_int)
        if self.range_out is None:
            return self.activation(to_float_units(acc, self.rescale))
        if self.fixed is not None:      # integer-only: int32 bias, (M0, shift) multiplier
            return self.fixed(acc).to(activation_dtype(self.range_out + self.zero_point_out,
                                                       self.low_out + self.zero_point_out))
        return requantize(acc, self.rescale, self.range_out, low=self.low_out,
                          zero_point=self.zero_point_out)

    def logits(self, x_int: Tensor) -> Tensor:
        """The float output before the activation (float-output layers only)."""
        return to_float_units(self.accumulate(x_int), self.rescale)

    def extra_repr(self) -> str:
        out = f"R_out={self.range_out}" if self.range_out is not None else "float output"
        return f"{self.kind}, W' {self.weight.dtype} {tuple(self.weight.shape)}, {out}, " + (
            f"accumulator {self.acc_dtype}"
        )


class IntegerBranchLayer(IntegerLinearLayer):
    """A fused residual branch: Conv (+ BatchNorm without QAct) whose only consumer is a SAT Sum.

    Output: acc * S' + B' per channel, float64 [N, O, H, W] in the Sum's output level units
    (branch_rescale), neither clamped nor rounded: the Sum adds it to its other inputs, then
    clamps and rounds once, as the fake-quant network does. In a weights folder: ``_weights``
    (W'), ``_biases`` (B', in the Sum's output units, unlike a quantized layer's accumulator-domain
    B') and ``_scaling`` (S'); no ``_clip``.
    """

    def __init__(self, kind: str, weight: Tensor, rescale: Rescale, **kwargs) -> None:
        super().__init__(kind, weight, rescale, range_out=None, **kwargs)

    def forward(self, x_int: Tensor) -> Tensor:
        acc = self.accumulate(x_int).double()
        shape = [1, -1] + [1] * (acc.dim() - 2)
        return acc.mul_(self.scaling.view(shape)).add_(self.bias.view(shape))

    def logits(self, x_int: Tensor) -> Tensor:
        return self.forward(x_int)

    def extra_repr(self) -> str:
        return (
            f"{self.kind} branch, W' {self.weight.dtype} {tuple(self.weight.shape)}, "
            f"accumulator {self.acc_dtype}, output acc * S' + B' (float64, Sum units)"
        )


class IntegerElemWise(nn.Module):
    """A fused residual Sum: sum_i c_i * (x_i - z_i) (c_0 = 1 in the usual case, z_i the
    inputs' zero points, 0 for branch inputs), then the rescale to the output levels
    [low_out, range_out] + zero_point_out.

    In a weights folder: ``<cell>_weights.syntxt`` (one coefficient per input), ``_scaling``
    and ``_clip`` (one value each).
    """

    type = "ElemWise"

    def __init__(self, coefficients: list[float], rescale: Rescale, range_out: int, *,
                 zero_points_in: list[int] | None = None, low_out: int = 0,
                 zero_point_out: int = 0) -> None:
        super().__init__()
        self.coefficients = [float(c) for c in coefficients]
        self.range_out = range_out
        self.zero_points_in = list(zero_points_in or [0] * len(self.coefficients))
        self.low_out, self.zero_point_out = low_out, zero_point_out
        self.register_buffer("bias", rescale.bias)
        self.register_buffer("clip", rescale.clip)
        self.register_buffer("scaling", rescale.scaling)

    @property
    def rescale(self) -> Rescale:
        return Rescale(bias=self.bias, clip=self.clip, scaling=self.scaling)

    def files(self, stem: str) -> dict[str, Tensor]:
        return {
            f"{stem}_weights.syntxt": torch.tensor(self.coefficients, dtype=torch.float64),
            f"{stem}_scaling.syntxt": self.scaling,
            f"{stem}_clip.syntxt": self.clip,
        }

    def load_file(self, name: str, tensor: Tensor) -> None:
        if name.endswith("_weights.syntxt"):
            self.coefficients = [float(v) for v in tensor.reshape(-1).tolist()]
            return
        buffer = self.scaling if name.endswith("_scaling.syntxt") else self.clip
        buffer.copy_(tensor.reshape(buffer.shape).to(buffer.dtype))

    def forward(self, *inputs: Tensor) -> Tensor:
        # float32 is exact for the integer inputs; the coefficient products round to ~1e-7.
        # Branch inputs (IntegerBranchLayer, float64 in the output units) keep float64.
        wide = any(x.is_floating_point() for x in inputs)
        dtype = torch.float64 if wide else torch.float32
        z = self.zero_points_in
        acc = (inputs[0].to(dtype) - z[0]) * self.coefficients[0]
        for c, x, z_i in zip(self.coefficients[1:], inputs[1:], z[1:], strict=True):
            acc.add_(x.to(dtype) - z_i if z_i else x.to(dtype), alpha=c)
        # Per-layer parameters: broadcast along the channel axis as one-element vectors.
        return requantize(acc, self.rescale, self.range_out, low=self.low_out,
                          zero_point=self.zero_point_out)

    def extra_repr(self) -> str:
        return f"coefficients={self.coefficients}, R_out={self.range_out}"
