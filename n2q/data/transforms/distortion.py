"""DistortionTransformation: random elastic distortion, scaling and rotation (Simard et al.).

Displacements: a uniform [-1, 1] field per pixel and axis, smoothed by a normalized Gaussian
kernel (ElasticGaussianSize, ElasticSigma) and multiplied by ElasticScaling (pixels). Scaling:
a factor 1 + U(-Scaling, Scaling)/100 per axis. Rotation: U(-Rotation, Rotation) degrees about
the centre. All are combined into one map sampled bilinearly, zero outside the image. With all
three at 0 the transformation is the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from n2q.data.transforms.base import Transformation, like, register_transformation, uniform
from n2q.data.transforms.geometry import bilinear_sample


@register_transformation("DistortionTransformation")
class Distortion(Transformation):
    KEYS = ("ElasticGaussianSize", "ElasticSigma", "ElasticScaling", "Scaling", "Rotation")

    def configure(self, sec) -> None:
        self.kernel_size = sec.int("ElasticGaussianSize", 15)
        if self.kernel_size <= 0 or self.kernel_size % 2 == 0:
            raise sec.error("ElasticGaussianSize", f"{self.kernel_size}: use a positive odd size")
        self.sigma = sec.float("ElasticSigma", 6.0)
        if self.sigma <= 0:
            raise sec.error("ElasticSigma", f"{self.sigma} must be positive")
        self.elastic = sec.float("ElasticScaling", 0.0)
        self.scaling = sec.float("Scaling", 0.0)
        self.rotation = sec.float("Rotation", 0.0)
        self.random = bool(self.elastic or self.scaling or self.rotation)

    def _smoothed_field(self, h: int, w: int, rng) -> torch.Tensor:
        field = torch.rand(2, 1, h, w, generator=rng) * 2 - 1
        r = self.kernel_size // 2
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-t * t / (2 * self.sigma ** 2))
        g = g / g.sum()
        field = F.conv2d(F.pad(field, (r, r, 0, 0)), g.view(1, 1, 1, -1))
        field = F.conv2d(F.pad(field, (0, 0, r, r)), g.view(1, 1, -1, 1))
        return field[:, 0] * self.elastic  # [2, H, W]: dy, dx

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        if not self.random:
            return x
        h, w = x.shape[-2:]
        sx = 1 + uniform(rng, -self.scaling, self.scaling) / 100
        sy = 1 + uniform(rng, -self.scaling, self.scaling) / 100
        angle = math.radians(uniform(rng, -self.rotation, self.rotation))
        cy, cx = (h - 1) / 2, (w - 1) / 2
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32) - cy,
                                torch.arange(w, dtype=torch.float32) - cx, indexing="ij")
        cos, sin = math.cos(angle), math.sin(angle)
        src_x = (cos * xx - sin * yy) / sx + cx
        src_y = (sin * xx + cos * yy) / sy + cy
        if self.elastic:
            d = self._smoothed_field(h, w, rng)
            src_y, src_x = src_y + d[0], src_x + d[1]
        out = bilinear_sample(x, src_y, src_x, "ConstantBorder", None)
        return like(out, x)
