"""Weight and bias fillers (``WeightsFiller=``, ``BiasFiller=`` and their ``.*`` options).

fan_in = kW*kH*C_in/groups, fan_out = kW*kH*NbOutputs (Fc: inputs, outputs), as the spec
defines them; a bias filler sees the fans of its cell's weights. All random draws use torch's
global generator (seeded by the run), in bulk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch

from n2q.config import Section
from n2q.net.base import check_sub_options

FILLERS: dict[str, type[Filler]] = {}
VARIANCE_NORMS = ("FanIn", "Average", "FanOut")


def register_filler(name: str) -> Callable[[type[Filler]], type[Filler]]:
    """Class decorator: make ``WeightsFiller=<name>`` / ``BiasFiller=<name>`` use this class."""

    def deco(cls: type[Filler]) -> type[Filler]:
        cls.name = name
        FILLERS[name] = cls
        return cls

    return deco


class Filler:
    """Initialises a weight or bias tensor in place from its cell's fans."""

    name: ClassVar[str] = ""
    # option suffix -> (constructor argument, default, kind: "float" | enum tuple)
    KEYS: ClassVar[dict[str, tuple[str, object, object]]] = {}

    @torch.no_grad()
    def fill(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{a}={getattr(self, a)}" for a, _, _ in self.KEYS.values())
        return f"{self.name}({opts})"


def _fan(norm: str, fan_in: int, fan_out: int) -> float:
    return {"FanIn": fan_in, "FanOut": fan_out, "Average": (fan_in + fan_out) / 2.0}[norm]


@register_filler("NormalFiller")
class NormalFiller(Filler):
    KEYS = {"Mean": ("mean", 0.0, "float"), "StdDev": ("std", 1.0, "float")}

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean, self.std = float(mean), float(std)

    @torch.no_grad()
    def fill(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        return tensor.normal_(self.mean, self.std)


@register_filler("UniformFiller")
class UniformFiller(Filler):
    KEYS = {"Min": ("low", 0.0, "float"), "Max": ("high", 1.0, "float")}

    def __init__(self, low: float = 0.0, high: float = 1.0) -> None:
        self.low, self.high = float(low), float(high)

    @torch.no_grad()
    def fill(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        return tensor.uniform_(self.low, self.high)


@register_filler("ConstantFiller")
class ConstantFiller(Filler):
    KEYS = {"Value": ("value", 0.0, "float")}

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    @torch.no_grad()
    def fill(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        return tensor.fill_(self.value)


@register_filler("XavierFiller")
class XavierFiller(Filler):
    """Uniform on +-sqrt(3/n) or normal with std sqrt(1/n), times Scaling."""

    KEYS = {"VarianceNorm": ("variance_norm", "FanIn", VARIANCE_NORMS),
            "Distribution": ("distribution", "Uniform", ("Uniform", "Normal")),
            "Scaling": ("scaling", 1.0, "float")}

    def __init__(self, variance_norm: str = "FanIn", distribution: str = "Uniform",
                 scaling: float = 1.0) -> None:
        self.variance_norm, self.distribution = variance_norm, distribution
        self.scaling = float(scaling)

    @torch.no_grad()
    def fill(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        n = _fan(self.variance_norm, fan_in, fan_out)
        if self.distribution == "Uniform":
            bound = math.sqrt(3.0 / n) * self.scaling
            return tensor.uniform_(-bound, bound)
        return tensor.normal_(0.0, math.sqrt(1.0 / n) * self.scaling)


@register_filler("HeFiller")
class HeFiller(Filler):
    """Scaling * normal(MeanNorm/n, sqrt(2/n)) (N2D2 scales the draw, mean included)."""

    KEYS = {"VarianceNorm": ("variance_norm", "FanIn", VARIANCE_NORMS),
            "MeanNorm": ("mean_norm", 0.0, "float"),
            "Scaling": ("scaling", 1.0, "float")}

    def __init__(self, variance_norm: str = "FanIn", mean_norm: float = 0.0,
                 scaling: float = 1.0) -> None:
        self.variance_norm = variance_norm
        self.mean_norm, self.scaling = float(mean_norm), float(scaling)

    @torch.no_grad()
    def fill(self, tensor: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
        n = _fan(self.variance_norm, fan_in, fan_out)
        # Scaling * N(m, s) has the law of N(Scaling*m, |Scaling|*s): one pass, no multiply
        return tensor.normal_(self.scaling * self.mean_norm / n,
                              abs(self.scaling) * math.sqrt(2.0 / n))


def default_filler() -> Filler:
    """N2D2's default for weights and biases: NormalFiller(0, 0.05)."""
    return NormalFiller(0.0, 0.05)


def make_filler(section: Section, key: str) -> Filler:
    """The filler named by ``key`` (e.g. ``WeightsFiller``) with its ``key.*`` options."""
    if key not in section:
        _check_options(section, key, None)
        return default_filler()
    name = section.enum(key, sorted(FILLERS))
    cls = FILLERS[name]
    _check_options(section, key, cls)
    kwargs = {}
    for opt, (arg, default, kind) in cls.KEYS.items():
        full = f"{key}.{opt}"
        if kind == "float":
            kwargs[arg] = section.float(full, default)
        else:
            kwargs[arg] = section.enum(full, kind, default)  # type: ignore[arg-type]
    return cls(**kwargs)


def _check_options(section: Section, key: str, cls: type[Filler] | None) -> None:
    """Options of no filler are errors; those of another filler (inherited from a base block
    whose filler the cell overrides) are ignored with a notice."""
    what = f"a {cls.name}" if cls else "the default filler (NormalFiller 0, 0.05)"
    every = {opt for c in FILLERS.values() for opt in c.KEYS}
    check_sub_options(section, key, cls.KEYS if cls else (), every, what)
