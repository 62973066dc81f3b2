"""FlipTransformation: fixed and/or random (p = 0.5) horizontal and vertical flips."""

from __future__ import annotations

import torch

from n2q.data.transforms.base import Transformation, register_transformation


@register_transformation("FlipTransformation")
class Flip(Transformation):
    KEYS = ("HorizontalFlip", "VerticalFlip", "RandomHorizontalFlip", "RandomVerticalFlip")

    def configure(self, sec) -> None:
        self.horizontal = sec.bool("HorizontalFlip", False)
        self.vertical = sec.bool("VerticalFlip", False)
        self.random_h = sec.bool("RandomHorizontalFlip", False)
        self.random_v = sec.bool("RandomVerticalFlip", False)
        self.random = self.random_h or self.random_v

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        h, v = self.horizontal, self.vertical
        # a random flip toggles the fixed one; one draw per random axis, horizontal first
        if self.random_h and float(torch.rand((), generator=rng)) < 0.5:
            h = not h
        if self.random_v and float(torch.rand((), generator=rng)) < 0.5:
            v = not v
        dims = [d for d, on in ((-1, h), (-2, v)) if on]
        return x.flip(dims) if dims else x
