"""RescaleTransformation: resize to Width x Height, optionally keeping the aspect ratio."""

from __future__ import annotations

import torch

from n2q.data.transforms.base import Transformation, output_size, register_transformation
from n2q.data.transforms.resize import resize


@register_transformation("RescaleTransformation")
class Rescale(Transformation):
    KEYS = ("Width", "Height", "KeepAspectRatio", "ResizeToFit")

    def configure(self, sec) -> None:
        self.width, self.height = output_size(sec)
        self.keep_aspect = sec.bool("KeepAspectRatio", False)
        self.resize_to_fit = sec.bool("ResizeToFit", True)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        if not self.keep_aspect:
            return self.height, self.width
        rx, ry = self.width / w, self.height / h
        r = min(rx, ry) if self.resize_to_fit else max(rx, ry)
        # int() truncates like N2D2's (int)(r * w); a degenerate side keeps one pixel
        return max(1, int(r * h)), max(1, int(r * w))

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        h, w = self.output_size(*x.shape[-2:])
        return resize(x, h, w)
