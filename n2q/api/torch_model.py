"""``quantize_model``: n2q's quantizers on any PyTorch model (Golden Stick's ``algo.apply``).

Weight quantizers go on the Conv (1d/2d/3d) and Linear layers, activation quantizers after the
ReLUs, for every registered method (the quantizer objects come from the registry through
:class:`n2q.QWeight` / :class:`n2q.QAct`, nothing here knows a method). The model keeps its
own ``forward`` and the names of its parameters: each quantized layer is changed in place into
a subclass of its class whose forward runs the op through n2q's ``apply_weight_op`` (the same
path as n2q's Conv/Fc cells), and gains a ``weight_quantizer`` child; a ReLU gains
``act_quantizers`` (one per call in a forward pass: a ReLU module reused in several places,
as torchvision's BasicBlock does, gets one quantizer per place). The result learns with any
PyTorch loop; the quantizers' parameters are ordinary parameters of the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from n2q.api.settings import QAct, QWeight
from n2q.errors import UserError
from n2q.quant import apply_weight_op


class _QuantizedLayer:
    """Mixin of the quantized Conv/Linear classes: the op with the quantized weight."""

    weight_quantizer: nn.Module

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self, nn.Linear):
            return F.linear(x, w, b)
        return self._conv_forward(x, w, b)  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_weight_op(self.weight_quantizer, self._op, x,
                               self.weight, self.bias)  # type: ignore[attr-defined]


class _QuantizedReLU:
    """Mixin of the quantized ReLU: relu, then the quantizer of this call's place."""

    act_quantizers: nn.ModuleList
    calls: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # type: ignore[misc]
        k = self.calls
        self.calls += 1
        if k >= len(self.act_quantizers):
            raise UserError(f"a quantized ReLU ran {k + 1} times in one forward but has "
                            f"{len(self.act_quantizers)} activation quantizer(s): give "
                            "quantize_model an example_input so that it counts the places "
                            "where each ReLU module is used")
        return self.act_quantizers[k](y)


_CLASSES: dict[type, type] = {}


def _quantized_class(cls: type, mixin: type) -> type:
    """``QuantizedConv2d`` for ``nn.Conv2d`` (created once per class)."""
    if cls not in _CLASSES:
        name = f"Quantized{cls.__name__}"
        new = type(name, (mixin, cls), {"__module__": __name__})
        new.__qualname__ = name
        _CLASSES[cls] = new
        globals().setdefault(name, new)   # torch.save(model) finds it by name
    return _CLASSES[cls]


for _cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear):
    _quantized_class(_cls, _QuantizedLayer)
_quantized_class(nn.ReLU, _QuantizedReLU)


def _weight_layers(module: nn.Module, skip: set[str]) -> list[tuple[str, nn.Module]]:
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, kinds) and not isinstance(m, _QuantizedLayer) and n not in skip]


def _relus(module: nn.Module, skip: set[str]) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, nn.ReLU) and not isinstance(m, _QuantizedReLU) and n not in skip]


def _check(value: Any, cls: type, what: str) -> None:
    if value is not None and value is not False and not isinstance(value, cls):
        raise UserError(f"quantize_model({what}=...): expected an n2q.{cls.__name__}, "
                        f"got {type(value).__name__}")


def _relu_calls(module: nn.Module, relus: list[tuple[str, nn.Module]],
                example_input: Any) -> dict[str, int]:
    """How many times each ReLU module runs in one forward of ``example_input``."""
    counts = {name: 0 for name, _ in relus}
    hooks = [m.register_forward_hook(lambda *_, n=name: counts.__setitem__(n, counts[n] + 1))
             for name, m in relus]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(*example_input) if isinstance(example_input, tuple) else module(example_input)
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    return counts


def _reset_calls(module: nn.Module, _args: Any) -> None:
    for m in module.modules():
        if isinstance(m, _QuantizedReLU):
            m.calls = 0


def quantize_model(module: nn.Module, weight: QWeight | None = None, act: QAct | None = None,
                   *, first: QWeight | bool | None = None, last: QWeight | bool | None = None,
                   skip: Iterable[str] = (), example_input: Any = None) -> nn.Module:
    """Put n2q quantizers on ``module`` (changed in place, and returned).

    ``weight``: the quantizer of every Conv/Linear (None: weights stay float); ``first`` /
    ``last``: that of the first and last of them in registration order (None: ``weight``,
    False: float; the seeds keep them at 8 bits: ``first=QWeight("SAT", range=255)``);
    ``act``: the quantizer after every ``nn.ReLU``; ``skip``: module names to leave alone;
    ``example_input``: one input (or a tuple of inputs) of ``module``, run once to count the
    places where each ReLU module is used (needed when one is used twice).
    """
    if not isinstance(module, nn.Module):
        raise UserError(f"quantize_model: expected a torch.nn.Module, got {type(module).__name__}")
    _check(weight, QWeight, "weight")
    _check(act, QAct, "act")
    _check(first, QWeight, "first")
    _check(last, QWeight, "last")
    if first is True or last is True:
        raise UserError("quantize_model(first=/last=): give an n2q.QWeight, None or False")
    if weight is None and act is None and not first and not last:
        raise UserError("quantize_model: give weight=n2q.QWeight(...) and/or act=n2q.QAct(...)")
    names = set(skip)
    layers = _weight_layers(module, names)
    relus = _relus(module, names) if act is not None else []
    calls = _relu_calls(module, relus, example_input) if example_input is not None else {}
    for i, (_, layer) in enumerate(layers):
        spec = first if i == 0 and first is not None else (
            last if i == len(layers) - 1 and last is not None else weight)
        if spec is None or spec is False:
            continue
        _put_weight_quantizer(layer, spec, module)
    for name, relu in relus:
        quantizers = [act.build() for _ in range(max(1, calls.get(name, 1)))]  # type: ignore[union-attr]
        relu.__class__ = _quantized_class(type(relu), _QuantizedReLU)
        relu.act_quantizers = nn.ModuleList(quantizers).to(_device(module))
        relu.calls = 0
        for q in quantizers:
            q.bind(relu, module)        # the protocol's first call
    if relus and not getattr(module, "_n2q_reset_hook", False):
        module.register_forward_pre_hook(_reset_calls)
        module._n2q_reset_hook = True
    return module


def _device(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _put_weight_quantizer(layer: nn.Module, spec: QWeight, model: nn.Module) -> None:
    if getattr(layer, "transposed", False):
        raise UserError(f"quantize_model: transposed convolutions are not supported "
                        f"({type(layer).__name__}): add its name to skip=")
    quantizer = spec.build().to(layer.weight.device)
    layer.__class__ = _quantized_class(type(layer), _QuantizedLayer)
    layer.weight_quantizer = quantizer
    quantizer.bind(layer, model)        # the protocol's first call


def quantized_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module name, quantizer) of every quantizer ``quantize_model`` put on ``module``: for
    the lifecycle calls of methods with a schedule (``q.start_epoch(e)``, ``q.after_step(s)``)
    in a hand-written loop."""
    found = []
    for name, m in module.named_modules():
        if isinstance(m, _QuantizedLayer):
            found.append((name, m.weight_quantizer))
        if isinstance(m, _QuantizedReLU):
            found += [(f"{name}[{i}]", q) for i, q in enumerate(m.act_quantizers)]
    return found
