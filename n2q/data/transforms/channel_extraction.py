"""ChannelExtractionTransformation: keep one channel (of BGR, HSV, grey or YCrCb).

The stimulus is taken as BGR (as decoded); the dtype is kept (8-bit stays 8-bit, with OpenCV's
8-bit encodings for H, Y, Cb, Cr). Grey is 0.299 R + 0.587 G + 0.114 B.
"""

from __future__ import annotations

import torch

from n2q.data.transforms.base import Transformation, register_transformation
from n2q.data.transforms.colorspace import convert

CHANNELS = {
    "Blue": ("BGR", 0), "Green": ("BGR", 1), "Red": ("BGR", 2),
    "Hue": ("HSV", 0), "Saturation": ("HSV", 1), "Value": ("HSV", 2),
    "Gray": ("YCrCb", 0), "Y": ("YCrCb", 0), "Cr": ("YCrCb", 1), "Cb": ("YCrCb", 2),
}


@register_transformation("ChannelExtractionTransformation")
class ChannelExtraction(Transformation):
    KEYS = ("CSChannel",)

    def configure(self, sec) -> None:
        self.channel = sec.enum("CSChannel", list(CHANNELS))

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        space, index = CHANNELS[self.channel]
        if x.shape[-3] == 1 and self.channel in ("Gray", "Y"):
            return x
        if x.shape[-3] not in (1, 3, 4):
            raise self.section.error("CSChannel", f"a {x.shape[-3]}-channel stimulus is not a "
                                     "colour image")
        if space == "BGR":
            if x.shape[-3] == 1:
                return x.clone()
            return x[..., index:index + 1, :, :].clone()
        y = convert(x[..., :3, :, :] if x.shape[-3] == 4 else x, "BGR", space)
        return y[..., index:index + 1, :, :].contiguous()
