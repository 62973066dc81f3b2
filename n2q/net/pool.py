"""Pooling cells (``Type=Pool``), per channel only (spec/network.md, Pool)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from n2q.config import Section
from n2q.net.activations import make_activation
from n2q.net.base import (
    Cell,
    Shape,
    check_spatial,
    conv_out_size,
    read_dims,
    register_cell,
)
from n2q.net.mapping import MAPPING_PREFIXES, read_connectivity

POOLINGS = ("Max", "Average")


@register_cell("Pool")
class PoolCell(Cell):
    """Max or average pooling of each channel. Output size floor((in + 2p - k + s) / s) as
    N2D2; max pooling pads with -inf; average pooling divides by the whole window, padding
    included, as N2D2 (``count_include_pad=False`` for ONNX's AveragePool default)."""

    KEYS = frozenset({"PoolDims", "PoolSize", "PoolWidth", "PoolHeight", "StrideDims",
                      "Stride", "StrideX", "StrideY", "PaddingDims", "Padding", "PaddingX",
                      "PaddingY", "Pooling", "NbOutputs", "CountIncludePadding"})
    PREFIXES = MAPPING_PREFIXES
    HAS_ACTIVATION = True

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape,
                 kernel: tuple[int, int], pooling: str = "Max", *,
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 activation: nn.Module | None = None, count_include_pad: bool = True) -> None:
        """Pairs are (height, width)."""
        super().__init__(name, inputs, in_shape, activation)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.kernel, self.pooling = tuple(kernel), pooling
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.count_include_pad = bool(count_include_pad)
        c, h, w = self.in_shape
        oh, ow = (conv_out_size(n, k, s, p) for n, k, s, p in
                  zip((h, w), self.kernel, self.stride, self.padding, strict=True))
        check_spatial(name, self.in_shape, (oh, ow))
        self.out_shape = (c, oh, ow)
        # torch's pooling refuses padding > kernel/2: pad explicitly then
        self._explicit_pad = any(p > k // 2 for p, k in zip(self.padding, self.kernel, strict=True))

    def op(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling == "Max":
            if self._explicit_pad:
                return F.max_pool2d(F.pad(x, self._pads(), value=float("-inf")), self.kernel,
                                    self.stride)
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        if not self._explicit_pad:
            return F.avg_pool2d(x, self.kernel, self.stride, self.padding,
                                count_include_pad=self.count_include_pad)
        y = F.avg_pool2d(F.pad(x, self._pads()), self.kernel, self.stride)  # pads counted
        if not self.count_include_pad:
            ones = F.pad(torch.ones_like(x[:1, :1]), self._pads())
            y = y / F.avg_pool2d(ones, self.kernel, self.stride)
        return y

    def _pads(self) -> tuple[int, int, int, int]:
        return (self.padding[1], self.padding[1], self.padding[0], self.padding[0])

    @classmethod
    def from_section(cls, section: Section, name: str, inputs: Sequence[str],
                     in_shape: Shape, input_shapes: Sequence[Shape] | None = None
                     ) -> PoolCell:
        cls.check_section_keys(section)
        kw, kh = read_dims(section, "Pool", None)
        sw, sh = read_dims(section, "Stride", 1)
        pw, ph = read_dims(section, "Padding", 0, minimum=0)
        pooling = section.enum("Pooling", POOLINGS)
        channels = in_shape[0]
        n_out = section.int("NbOutputs", channels)
        shapes = input_shapes or [in_shape]
        named = [(n, s[0]) for n, s in zip(inputs, shapes, strict=True)]
        conn = read_connectivity(section, named, n_out)
        if not (conn.mask is None and conn.groups == channels == n_out):
            raise section.error("NbOutputs" if n_out != channels else None,
                                "only per-channel pooling is supported (N2D2's default "
                                "mapping mixes all channels, which its GPU model refuses): "
                                f"add Mapping.Size=1 with NbOutputs={channels} (the number "
                                "of input channels), or Mapping.ChannelsPerGroup=1")
        # n2q: CountIncludePadding=0 divides by the valid values only (ONNX's AveragePool)
        include = bool(section.bool("CountIncludePadding", True))
        return cls(name, inputs, in_shape, (kh, kw), pooling, stride=(sh, sw),
                   padding=(ph, pw), activation=make_activation(section),
                   count_include_pad=include)
