"""Cells without weights: Dropout, Softmax, Padding, Resize, Reshape, Transpose, Scaling,
Activation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from n2q.config import Section
from n2q.net.activations import make_activation
from n2q.net.base import Cell, Shape, check_spatial, nb_outputs, register_cell


@register_cell("Dropout")
class DropoutCell(Cell):
    """Zeroes each element with probability ``p`` in training (survivors scaled 1/(1-p))."""

    KEYS = frozenset({"NbOutputs", "Dropout"})

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape, p: float = 0.5
                 ) -> None:
        super().__init__(name, inputs, in_shape)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"the dropping probability must be in [0, 1), got {p}")
        self.p = float(p)

    def op(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.p, self.training) if self.p > 0 else x

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        p = section.float("Dropout", 0.5)
        if not 0.0 <= p < 1.0:
            raise section.error("Dropout", f"the dropping probability must be in [0, 1), "
                                f"got {p}")
        return {"p": p}


@register_cell("Softmax")
class SoftmaxCell(Cell):
    """Softmax over channels. ``with_loss``: the network trains it with cross-entropy on its
    input (the logits), which ``Network.forward`` returns for a target Softmax."""

    KEYS = frozenset({"NbOutputs", "WithLoss"})

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape,
                 with_loss: bool = False) -> None:
        super().__init__(name, inputs, in_shape)
        self.with_loss = bool(with_loss)

    def op(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        return {"with_loss": bool(section.bool("WithLoss", False))}


@register_cell("Padding")
class PaddingCell(Cell):
    """Zero padding; negative values crop."""

    KEYS = frozenset({"NbOutputs", "TopPadding", "BottomPadding", "LeftPadding",
                      "RightPadding"})

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape, top: int = 0,
                 bottom: int = 0, left: int = 0, right: int = 0) -> None:
        super().__init__(name, inputs, in_shape)
        self.pads = (left, right, top, bottom)  # F.pad's order
        c, h, w = self.in_shape
        out = (h + top + bottom, w + left + right)
        check_spatial(name, self.in_shape, out)
        self.out_shape = (c, *out)

    def op(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        return {side.lower(): section.int(f"{side}Padding", 0)
                for side in ("Top", "Bottom", "Left", "Right")}


RESIZE_MODES = ("Bilinear", "BilinearTF", "NearestNeighbor")


def _source_coords(out: int, size: int, align_corners: bool) -> torch.Tensor:
    """TensorFlow's legacy (asymmetric) source coordinates of the output pixels."""
    scale = (size - 1) / (out - 1) if align_corners and out > 1 else size / out
    return torch.arange(out, dtype=torch.float32) * scale


def _linear_1d(x: torch.Tensor, dim: int, out: int, align_corners: bool) -> torch.Tensor:
    size = x.shape[dim]
    src = _source_coords(out, size, align_corners).to(x.device)
    lo = src.floor().clamp(max=size - 1)
    frac = (src - lo).to(x.dtype)
    lo = lo.long()
    hi = (lo + 1).clamp(max=size - 1)
    shape = [1] * x.dim()
    shape[dim] = out
    frac = frac.reshape(shape)
    return x.index_select(dim, lo) * (1 - frac) + x.index_select(dim, hi) * frac


@register_cell("Resize")
class ResizeCell(Cell):
    """Resize to (OutputHeight, OutputWidth).

    Bilinear: half-pixel centres (torch/N2D2 bilinear), or corner-aligned with AlignCorners.
    BilinearTF: TensorFlow's legacy resize_bilinear (source = dst * in/out, or corner
    aligned). NearestNeighbor: source floor(dst * in/out), or round(dst * (in-1)/(out-1))
    with AlignCorners (halves rounded up).
    """

    KEYS = frozenset({"NbOutputs", "OutputWidth", "OutputHeight", "Mode", "AlignCorners"})

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape, height: int,
                 width: int, mode: str = "Bilinear", align_corners: bool = False) -> None:
        super().__init__(name, inputs, in_shape)
        if mode not in RESIZE_MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")
        check_spatial(name, self.in_shape, (height, width))
        self.mode, self.align_corners = mode, bool(align_corners)
        self.out_shape = (self.in_shape[0], height, width)

    def op(self, x: torch.Tensor) -> torch.Tensor:
        size = self.out_shape[1:]
        if self.mode == "Bilinear":
            return F.interpolate(x, size=size, mode="bilinear",
                                 align_corners=self.align_corners)
        if self.mode == "BilinearTF":
            return _linear_1d(_linear_1d(x, 2, size[0], self.align_corners), 3, size[1],
                              self.align_corners)
        if not self.align_corners:
            return F.interpolate(x, size=size, mode="nearest")
        for dim, out in ((2, size[0]), (3, size[1])):
            # rounding half away from zero, as TF's align_corners nearest
            src = (_source_coords(out, x.shape[dim], True) + 0.5).floor().long().to(x.device)
            x = x.index_select(dim, src)
        return x

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        height, width = section.int("OutputHeight"), section.int("OutputWidth")
        for key, v in (("OutputHeight", height), ("OutputWidth", width)):
            if v <= 0:
                raise section.error(key, f"must be > 0, got {v}")
        return {"height": height, "width": width, "mode": section.enum("Mode", RESIZE_MODES),
                "align_corners": bool(section.bool("AlignCorners", False))}


def _n2d2_to_shape(dims: Sequence[int], in_shape: Shape) -> Shape:
    """N2D2's Reshape dims (width, height, channels[, batch ignored]; missing ones = 1,
    0 = the input's, one -1 inferred) -> (C, H, W)."""
    dims = list(dims[:3]) + [1] * (3 - len(dims[:3]))
    c, h, w = in_shape
    dims = [(w, h, c)[i] if d == 0 else d for i, d in enumerate(dims)]
    size = c * h * w
    if dims.count(-1) > 1:
        raise ValueError("at most one dimension can be -1")
    if dims.count(-1) == 1:
        known = math.prod(d for d in dims if d != -1)
        if known <= 0 or size % known:
            raise ValueError(f"cannot infer -1: {size} values are not a multiple of {known}")
        dims[dims.index(-1)] = size // known
    if any(d <= 0 for d in dims) or math.prod(dims) != size:
        raise ValueError(f"Dims {' '.join(map(str, dims))} hold {math.prod(dims)} values, "
                         f"the input has {size}")
    return (dims[2], dims[1], dims[0])


@register_cell("Reshape")
class ReshapeCell(Cell):
    """Reinterpret the C*H*W values of each example (order unchanged) as ``out_shape``."""

    KEYS = frozenset({"NbOutputs", "Dims"})

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape, out_shape: Shape
                 ) -> None:
        super().__init__(name, inputs, in_shape)
        if math.prod(out_shape) != math.prod(self.in_shape):
            raise ValueError(f"cannot reshape {self.in_shape} into {tuple(out_shape)}")
        self.out_shape = tuple(int(v) for v in out_shape)  # type: ignore[assignment]

    def op(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.out_shape)

    @classmethod
    def from_section(cls, section: Section, name: str, inputs: Sequence[str],
                     in_shape: Shape, input_shapes: Sequence[Shape] | None = None
                     ) -> ReshapeCell:
        cls.check_section_keys(section)
        dims = section.ints("Dims")
        if not 1 <= len(dims) <= 4:
            raise section.error("Dims", "give 1 to 4 values: width [height [channels [batch, "
                                "ignored]]]")
        try:
            out = _n2d2_to_shape(dims, in_shape)
        except ValueError as e:
            raise section.error("Dims", str(e)) from None
        nb_outputs(section, out[0])
        return cls(name, inputs, in_shape, out)


@register_cell("Transpose")
class TransposeCell(Cell):
    """Permute the dimensions. ``perm`` in N2D2's order (0 = width, 1 = height,
    2 = channels, optional 3 = batch, which must stay): output dim i = input dim perm[i]."""

    KEYS = frozenset({"NbOutputs", "Perm"})

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape,
                 perm: Sequence[int]) -> None:
        super().__init__(name, inputs, in_shape)
        perm = list(perm)
        if len(perm) == 4 and perm[3] == 3:
            perm = perm[:3]
        if sorted(perm) != [0, 1, 2]:
            raise ValueError(f"Perm must be a permutation of 0 1 2 (width height channels), "
                             f"got {' '.join(map(str, perm))}")
        self.perm = perm
        # N2D2 dim d is torch axis 3-d: torch output axis 3-i takes input axis 3-perm[i]
        torch_perm = [0, 0, 0, 0]
        for i, d in enumerate(perm):
            torch_perm[3 - i] = 3 - d
        self.torch_perm = tuple(torch_perm)
        self.out_shape = tuple(self.in_shape[a - 1] for a in self.torch_perm[1:])  # type: ignore[assignment]

    def op(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.torch_perm)

    @classmethod
    def from_section(cls, section: Section, name: str, inputs: Sequence[str],
                     in_shape: Shape, input_shapes: Sequence[Shape] | None = None
                     ) -> TransposeCell:
        cls.check_section_keys(section)
        try:
            cell = cls(name, inputs, in_shape, section.ints("Perm"))
        except ValueError as e:
            raise section.error("Perm", str(e)) from None
        nb_outputs(section, cell.out_shape[0])
        return cell


@register_cell("Scaling")
class ScalingCell(Cell):
    """y = Factor * x, one factor or one per channel."""

    KEYS = frozenset({"NbOutputs", "Factor"})

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape,
                 factor: float | Sequence[float] = 1.0) -> None:
        super().__init__(name, inputs, in_shape)
        f = torch.as_tensor(factor, dtype=torch.float32).reshape(-1)
        if f.numel() not in (1, self.in_shape[0]):
            raise ValueError(f"give 1 factor or {self.in_shape[0]} (one per channel), got "
                             f"{f.numel()}")
        self.register_buffer("factor", f.reshape(1, -1, 1, 1) if f.numel() > 1
                             else f.reshape(()))

    def op(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    @classmethod
    def from_section(cls, section: Section, name: str, inputs: Sequence[str],
                     in_shape: Shape, input_shapes: Sequence[Shape] | None = None
                     ) -> ScalingCell:
        try:  # the constructor checks the number of factors against the channels
            return super().from_section(section, name, inputs, in_shape, input_shapes)
        except ValueError as e:
            raise section.error("Factor", str(e)) from None

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        return {"factor": section.floats("Factor")}


@register_cell("Activation")
class ActivationCell(Cell):
    """A standalone activation layer."""

    HAS_ACTIVATION = True
    KEYS = frozenset({"NbOutputs"})

    def op(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        return {"activation": make_activation(section)}
