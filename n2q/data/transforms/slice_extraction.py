"""SliceExtractionTransformation: a Width x Height slice at an offset (fixed or random).

Random offsets are uniform in [0, W_img - W] inclusive. With RandomRotation / RandomScaling the
slice is rotated about its centre by an angle drawn in RandomRotationRange (degrees) and covers
s*W x s*H image pixels for s drawn in RandomScalingRange, sampled bilinearly (cv::warpAffine
style); pixels outside the image follow BorderType. A slice that does not fit in the image is
an error unless AllowPadding=1 (then it is padded with BorderType / BorderValue).
"""

from __future__ import annotations

import math

import torch

from n2q.data.transforms.base import (
    Transformation,
    like,
    output_size,
    randint_inclusive,
    register_transformation,
    uniform,
)
from n2q.data.transforms.geometry import bilinear_sample, window
from n2q.data.transforms.padcrop import border_fill, read_border


@register_transformation("SliceExtractionTransformation")
class SliceExtraction(Transformation):
    KEYS = ("Width", "Height", "OffsetX", "OffsetY", "RandomOffsetX", "RandomOffsetY",
            "RandomRotation", "RandomRotationRange", "RandomScaling", "RandomScalingRange",
            "AllowPadding", "BorderType", "BorderValue")

    def configure(self, sec) -> None:
        self.width, self.height = output_size(sec)
        self.offset_x = sec.int("OffsetX", 0)
        self.offset_y = sec.int("OffsetY", 0)
        self.random_x = sec.bool("RandomOffsetX", False)
        self.random_y = sec.bool("RandomOffsetY", False)
        self.rotation = sec.bool("RandomRotation", False)
        self.rotation_range = self._range(sec, "RandomRotationRange", [0.0, 360.0])
        self.scaling = sec.bool("RandomScaling", False)
        self.scaling_range = self._range(sec, "RandomScalingRange", [0.8, 1.2])
        if self.scaling_range[0] <= 0:
            raise sec.error("RandomScalingRange", "scales must be positive")
        self.allow_padding = sec.bool("AllowPadding", False)
        self.border, self.value = read_border(sec)
        self.random = self.random_x or self.random_y or self.rotation or self.scaling

    @staticmethod
    def _range(sec, key: str, default: list[float]) -> tuple[float, float]:
        values = sec.floats(key, default)
        if len(values) != 2 or values[0] > values[1]:
            raise sec.error(key, "expected two values: min max (min <= max)")
        return values[0], values[1]

    def _offset(self, rng, axis: str, size: int, img: int) -> int:
        random = self.random_x if axis == "X" else self.random_y
        if random:
            return randint_inclusive(rng, 0, img - size) if img >= size else 0
        return self.offset_x if axis == "X" else self.offset_y

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        ox = self._offset(rng, "X", self.width, w)
        oy = self._offset(rng, "Y", self.height, h)
        fits = 0 <= ox and 0 <= oy and ox + self.width <= w and oy + self.height <= h
        if not fits and not self.allow_padding:
            raise self.section.error(None, f"a {self.width}x{self.height} slice at ({ox}, {oy}) "
                                     f"does not fit in a {w}x{h} stimulus: set AllowPadding=1 "
                                     "or fix Width/Height/Offset")
        fill = border_fill(self.section, self.value, x.shape[-3])
        if not (self.rotation or self.scaling):
            return window(x, oy, ox, self.height, self.width, self.border, fill)
        angle = uniform(rng, *self.rotation_range) if self.rotation else 0.0
        scale = uniform(rng, *self.scaling_range) if self.scaling else 1.0
        return self._warped(x, ox, oy, math.radians(angle), scale, fill)

    def _warped(self, x, ox, oy, angle, scale, fill) -> torch.Tensor:
        # output pixel (u, v) relative to the slice centre, rotated and scaled into the image
        cu, cv = (self.width - 1) / 2, (self.height - 1) / 2
        v, u = torch.meshgrid(torch.arange(self.height, dtype=torch.float64) - cv,
                              torch.arange(self.width, dtype=torch.float64) - cu, indexing="ij")
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        sx = ox + cu + cos * u - sin * v
        sy = oy + cv + sin * u + cos * v
        single = x.dim() == 3
        xs = x if single else x.reshape(-1, *x.shape[-3:])[0]
        out = bilinear_sample(xs, sy.float(), sx.float(), self.border, fill)
        return like(out, x)
