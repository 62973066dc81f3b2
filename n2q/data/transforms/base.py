"""The transformation contract and the 8-bit rule.

A transformation maps a stimulus tensor ``[..., C, H, W]`` (uint8 or float32) to another one.
Deterministic transformations accept any leading batch dimensions (the provider runs them on a
whole in-memory data base at once); random ones get one stimulus ``[C, H, W]`` and a
``torch.Generator`` seeded from (run seed, epoch, stimulus id).

8-bit rule (N2D2 works on OpenCV 8-bit images): a transformation given uint8 returns uint8,
rounded half to even and saturated like OpenCV's ``saturate_cast``, unless it is one that
outputs float (``FLOAT_OUTPUT``: RangeAffine, Normalize).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from n2q.registry import registrar

if TYPE_CHECKING:
    from n2q.config import Section

TRANSFORMATIONS: dict[str, type[Transformation]] = {}


# ``@register_transformation("Name")``: the class ``Type=Name`` selects (its ``TYPE`` = "Name")
register_transformation = registrar(TRANSFORMATIONS, "TYPE")


class Transformation:
    TYPE = ""
    KEYS: tuple[str, ...] = ()
    FLOAT_OUTPUT = False

    def __init__(self, section: Section) -> None:
        self.section = section
        self.random = False  # set by configure() when a key asks for random draws
        self.configure(section)

    def configure(self, sec: Section) -> None:
        """Read and validate this type's keys."""

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.TYPE}[{self.section.name}]"


def like(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` (float) back to the dtype of the input ``x``: uint8 is rounded and saturated."""
    if x.dtype == torch.uint8:
        return y.round().clamp_(0, 255).to(torch.uint8)
    return y.to(x.dtype) if y.dtype != x.dtype else y


def per_channel(sec: Section, key: str, values: list[float], channels: int) -> torch.Tensor:
    """One value, or one per channel, shaped [C, 1, 1] for broadcasting."""
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise sec.error(key, f"{len(values)} values for a stimulus of {channels} channels: "
                        "give one value or one per channel")
    return torch.tensor(values, dtype=torch.float32).view(channels, 1, 1)


def output_size(sec: Section) -> tuple[int, int]:
    """The section's ``Width`` and ``Height`` keys (output size in pixels), both positive."""
    width, height = sec.int("Width"), sec.int("Height")
    for key, v in (("Width", width), ("Height", height)):
        if v <= 0:
            raise sec.error(key, f"{v} must be a positive number of pixels")
    return width, height


def uniform(rng: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=rng))


def randint_inclusive(rng: torch.Generator | None, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (), generator=rng))
