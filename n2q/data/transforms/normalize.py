"""NormalizeTransformation: per-stimulus (or per-channel) normalization, like cv::normalize.

MinMax: NormMin + (x - min) * (NormMax - NormMin) / (max - min); L1 / L2 / Linf:
x * NormValue / norm. A constant stimulus (max = min) or a zero norm gives a scale of 0, as in
OpenCV. The output is float.
"""

from __future__ import annotations

import torch

from n2q.data.transforms.base import Transformation, register_transformation

NORMS = ("MinMax", "L1", "L2", "Linf")


@register_transformation("NormalizeTransformation")
class Normalize(Transformation):
    KEYS = ("Norm", "NormValue", "NormMin", "NormMax", "PerChannel")
    FLOAT_OUTPUT = True

    def configure(self, sec) -> None:
        self.norm = sec.enum("Norm", NORMS, "MinMax")
        self.value = sec.float("NormValue", 1.0)
        self.low = sec.float("NormMin", 0.0)
        self.high = sec.float("NormMax", 1.0)
        self.per_channel = sec.bool("PerChannel", False)

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        v = x.to(torch.float64)
        dims = (-2, -1) if self.per_channel else (-3, -2, -1)
        if self.norm == "MinMax":
            lo = v.amin(dim=dims, keepdim=True)
            span = v.amax(dim=dims, keepdim=True) - lo
            scale = torch.where(span > 0, (self.high - self.low) / span.clamp(min=1e-300),
                                torch.zeros_like(span))
            return ((v - lo) * scale + self.low).to(torch.float32)
        if self.norm == "L1":
            norm = v.abs().sum(dim=dims, keepdim=True)
        elif self.norm == "L2":
            norm = (v * v).sum(dim=dims, keepdim=True).sqrt()
        else:
            norm = v.abs().amax(dim=dims, keepdim=True)
        scale = torch.where(norm > 0, self.value / norm.clamp(min=1e-300),
                            torch.zeros_like(norm))
        return (v * scale).to(torch.float32)
