"""RandomResizeCropTransformation: a random area / aspect-ratio crop resized to Width x Height.

Up to 10 tries: area = A * U(ScaleMin, ScaleMax), ratio = exp(U(ln RatioMin, ln RatioMax)),
w = round(sqrt(area*ratio)), h = round(sqrt(area/ratio)); the first that fits is placed at a
uniform random position. Fallback (n2q, like torchvision; N2D2 anchors it at (0, 0)): the
centred crop of the whole image with its ratio clamped to [RatioMin, RatioMax]. The crop is
then resized bilinearly (OpenCV INTER_LINEAR arithmetic on 8-bit images).
"""

from __future__ import annotations

import math

import torch

from n2q.data.transforms.base import (
    Transformation,
    output_size,
    randint_inclusive,
    register_transformation,
    uniform,
)
from n2q.data.transforms.resize import resize


@register_transformation("RandomResizeCropTransformation")
class RandomResizeCrop(Transformation):
    KEYS = ("Width", "Height", "ScaleMin", "ScaleMax", "RatioMin", "RatioMax")

    def configure(self, sec) -> None:
        self.width, self.height = output_size(sec)
        self.scale = (sec.float("ScaleMin", 1.0), sec.float("ScaleMax", 1.0))
        self.ratio = (sec.float("RatioMin", 1.0), sec.float("RatioMax", 1.0))
        if not 0 < self.scale[0] <= self.scale[1]:
            raise sec.error("ScaleMax", f"need 0 < ScaleMin <= ScaleMax, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise sec.error("RatioMax", f"need 0 < RatioMin <= RatioMax, got {self.ratio}")
        self.random = True

    def crop_box(self, h: int, w: int, rng: torch.Generator | None) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the crop."""
        area = h * w
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * uniform(rng, *self.scale)
            ratio = math.exp(uniform(rng, log_lo, log_hi))
            cw = round(math.sqrt(target * ratio))
            ch = round(math.sqrt(target / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                return randint_inclusive(rng, 0, h - ch), randint_inclusive(rng, 0, w - cw), ch, cw
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, round(w / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            ch, cw = h, round(h * self.ratio[1])
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        top, left, ch, cw = self.crop_box(*x.shape[-2:], rng)
        crop = x[..., top:top + ch, left:left + cw]
        return resize(crop, self.height, self.width)
