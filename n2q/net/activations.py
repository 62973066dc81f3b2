"""Activation functions (``ActivationFunction=`` and its ``ActivationFunction.*`` options).

Each activation is an ``nn.Module`` registered by its N2D2 name in :data:`ACTIVATIONS`, with
the option keys it reads in ``KEYS`` (key suffix -> constructor argument, default).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from n2q.config import Section
from n2q.net.base import check_sub_options

ACTIVATIONS: dict[str, type[Activation]] = {}


def register_activation(name: str) -> Callable[[type[Activation]], type[Activation]]:
    """Class decorator: make ``ActivationFunction=<name>`` build this module."""

    def deco(cls: type[Activation]) -> type[Activation]:
        cls.name = name
        ACTIVATIONS[name] = cls
        return cls

    return deco


class Activation(nn.Module):
    """An elementwise activation; its constructor takes the ``KEYS`` arguments."""

    name: ClassVar[str] = ""
    # option suffix (after "ActivationFunction.") -> (constructor argument, default)
    KEYS: ClassVar[dict[str, tuple[str, float]]] = {}
    with_loss: ClassVar[bool] = False  # LogisticWithLoss: the loss takes the logits

    def extra_repr(self) -> str:
        return ", ".join(f"{arg}={getattr(self, arg)}" for arg, _ in self.KEYS.values())


@register_activation("Linear")
class Linear(Activation):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register_activation("Rectifier")
class Rectifier(Activation):
    """max(x, 0) (or LeakSlope*x below 0), then min(., Clipping) when Clipping > 0."""

    KEYS = {"LeakSlope": ("leak_slope", 0.0), "Clipping": ("clipping", 0.0)}

    def __init__(self, leak_slope: float = 0.0, clipping: float = 0.0) -> None:
        super().__init__()
        self.leak_slope = float(leak_slope)
        self.clipping = float(clipping)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(x, self.leak_slope) if self.leak_slope else F.relu(x)
        if self.clipping > 0:
            y = torch.clamp(y, max=self.clipping)
        return y


@register_activation("Logistic")
class Logistic(Activation):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


@register_activation("LogisticWithLoss")
class LogisticWithLoss(Logistic):
    """Sigmoid whose loss is binary cross-entropy on the logits (gradient output - target)."""

    with_loss = True


@register_activation("Saturation")
class Saturation(Activation):
    """clamp(x, -Threshold, Threshold)."""

    KEYS = {"Threshold": ("threshold", 1.0)}

    def __init__(self, threshold: float = 1.0) -> None:
        super().__init__()
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, -self.threshold, self.threshold)


@register_activation("Softplus")
class Softplus(Activation):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x)


@register_activation("Swish")
class Swish(Activation):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


@register_activation("Tanh")
class Tanh(Activation):
    """tanh(Alpha * x)."""

    KEYS = {"Alpha": ("alpha", 1.0)}

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x * self.alpha) if self.alpha != 1.0 else torch.tanh(x)


@register_activation("TanhLeCun")
class TanhLeCun(Activation):
    """LeCun's scaled tanh: 1.7159 * tanh(2x/3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


def make_activation(section: Section, key: str = "ActivationFunction") -> nn.Module:
    """The activation named by ``key`` with its options; identity when the key is absent."""
    if key not in section:
        _refuse_orphan_options(section, key, None)
        return nn.Identity()
    name = section.enum(key, sorted(ACTIVATIONS))
    cls = ACTIVATIONS[name]
    _refuse_orphan_options(section, key, cls)
    kwargs = {arg: section.float(f"{key}.{opt}", default)
              for opt, (arg, default) in cls.KEYS.items()}
    act = cls(**kwargs)
    if isinstance(act, Rectifier) and act.clipping < 0:
        raise section.error(f"{key}.Clipping", "must be >= 0 (0 = no clipping)")
    return act


def _refuse_orphan_options(section: Section, key: str, cls: type[Activation] | None) -> None:
    """Options of no activation are errors; those of another one (``.Clipping`` inherited
    under ``ActivationFunction=Linear``) are ignored with a notice."""
    what = f"a {cls.name} activation" if cls else f"no {key} (none is set)"
    every = {opt for c in ACTIVATIONS.values() for opt in c.KEYS}
    check_sub_options(section, key, cls.KEYS if cls else (), every, what)
