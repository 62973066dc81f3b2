"""PadCropTransformation: centre pad or crop to Width x Height.

Padding: top = ceil(dh/2), left = ceil(dw/2) (dh, dw: pixels added); cropping: the extra pixel
of an odd difference is removed at the bottom/right. Both are "source row = row - ceil(dh/2)".
"""

from __future__ import annotations

import math

import torch

from n2q.data.transforms.base import Transformation, register_transformation
from n2q.data.transforms.geometry import BORDERS, window


def read_border(sec) -> tuple[str, list[float] | None]:
    border = sec.enum("BorderType", BORDERS, "MinusOneReflectBorder")
    value = sec.floats("BorderValue", None)
    return border, value


def border_fill(sec, value: list[float] | None, channels: int) -> torch.Tensor | None:
    if value is None:
        return None
    if len(value) == 1:
        value = value * channels
    if len(value) != channels:
        raise sec.error("BorderValue", f"{len(value)} values for {channels} channels: give one "
                        "value or one per channel")
    return torch.tensor(value, dtype=torch.float32).view(channels, 1, 1)


def pad_crop(x: torch.Tensor, height: int, width: int, border: str,
             value: torch.Tensor | None) -> torch.Tensor:
    h, w = x.shape[-2:]
    top = math.ceil((height - h) / 2)
    left = math.ceil((width - w) / 2)
    return window(x, -top, -left, height, width, border, value)


@register_transformation("PadCropTransformation")
class PadCrop(Transformation):
    KEYS = ("Width", "Height", "AdditiveWH", "BorderType", "BorderValue")

    def configure(self, sec) -> None:
        self.width = sec.int("Width")
        self.height = sec.int("Height")
        self.additive = sec.bool("AdditiveWH", False)
        if not self.additive:
            for key, v in (("Width", self.width), ("Height", self.height)):
                if v <= 0:
                    raise sec.error(key, f"{v} must be a positive number of pixels")
        self.border, self.value = read_border(sec)

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        height, width = (h + self.height, w + self.width) if self.additive else (
            self.height, self.width)
        if height <= 0 or width <= 0:
            raise self.section.error("Width", f"AdditiveWH gives {width}x{height} for a "
                                     f"{w}x{h} stimulus")
        fill = border_fill(self.section, self.value, x.shape[-3])
        return pad_crop(x, height, width, self.border, fill)
