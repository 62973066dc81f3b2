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
from n2q.quant.protocol import RunPlan

__all__ = ["RunPlan", "lifecycle", "quantize_model", "quantized_layers"]


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


def _trace(module: nn.Module, watched: list[tuple[str, nn.Module]],
           example_input: Any) -> dict[str, list[tuple[int, ...]]]:
    """The output shape (C, H, W...) of each call of each watched module in one forward of
    ``example_input`` (a ReLU module used in two places runs twice)."""
    shapes: dict[str, list[tuple[int, ...]]] = {name: [] for name, _ in watched}

    def hook(name: str) -> Any:
        return lambda _m, _i, out: shapes[name].append(tuple(out.shape[1:]))

    hooks = [m.register_forward_hook(hook(name)) for name, m in watched]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(*example_input) if isinstance(example_input, tuple) else module(example_input)
    finally:
        for h in hooks:
            h.remove()
        module.train(was_training)
    return shapes


class _CellView:
    """What a quantizer's ``bind(cell, net)`` reads of an n2q cell, for a torch layer: name,
    type (Conv, Fc, Activation), out_shape (from ``example_input``; else the output channels
    of a weight layer and 0 for a ReLU), its quantizers, no INI section."""

    def __init__(self, name: str, kind: str, out_shape: tuple[int, ...],
                 weight_quantizer: nn.Module | None = None,
                 act_quantizer: nn.Module | None = None) -> None:
        self.name, self.type, self.out_shape = name, kind, out_shape
        self.weight_quantizer, self.act_quantizer = weight_quantizer, act_quantizer
        self.section, self.activation, self.inputs = None, nn.Identity(), []


class _NetView:
    """The network a quantizer is bound to: the quantized places of the torch model, in
    order. Their connections are not known (``consumers`` is empty): methods that need the
    graph (a BatchNorm to fold) say so when bound."""

    def __init__(self, cells: list[_CellView]) -> None:
        self.cells = {c.name: c for c in cells}
        self.inputs: dict[str, list[str]] = {c.name: [] for c in cells}

    def consumers(self, name: str) -> list[str]:
        return []


def _bind_all(module: nn.Module, views: list[_CellView]) -> None:
    """The protocol's first call, once every quantizer is in place (a method may count the
    cells that share its settings)."""
    net = _NetView(views)
    module.__dict__["_n2q_view"] = net
    for view in views:
        for q in (view.weight_quantizer, view.act_quantizer):
            if q is not None:
                q.bind(view, net)


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
    places where each ReLU module is used (needed when one is used twice) and to give the
    quantizers the shapes they are bound to (per-channel methods). Methods with a schedule
    (SLB) need their lifecycle calls in a hand-written loop: see :func:`lifecycle`.
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
    shapes = _trace(module, layers + relus, example_input) if example_input is not None else {}
    views = []
    for i, (name, layer) in enumerate(layers):
        spec = first if i == 0 and first is not None else (
            last if i == len(layers) - 1 and last is not None else weight)
        if spec is None or spec is False:
            continue
        _put_weight_quantizer(layer, spec)
        out = (shapes.get(name) or [(int(layer.weight.shape[0]),)])[0]
        views.append(_CellView(name, "Fc" if isinstance(layer, nn.Linear) else "Conv", out,
                               weight_quantizer=layer.weight_quantizer))
    for name, relu in relus:
        places = shapes.get(name) or [(0,)]
        quantizers = [act.build() for _ in places]  # type: ignore[union-attr]
        relu.__class__ = _quantized_class(type(relu), _QuantizedReLU)
        relu.act_quantizers = nn.ModuleList(quantizers).to(_device(module))
        relu.calls = 0
        views += [_CellView(f"{name}[{k}]", "Activation", out, act_quantizer=q)
                  for k, (out, q) in enumerate(zip(places, quantizers, strict=True))]
    _bind_all(module, views)
    if relus and not getattr(module, "_n2q_reset_hook", False):
        module.register_forward_pre_hook(_reset_calls)
        module._n2q_reset_hook = True
    return module


def lifecycle(model: nn.Module) -> Any:
    """The quantizer lifecycle of a model quantized by :func:`quantize_model` (or of an
    :class:`n2q.Network`), for methods with a schedule (SLB's temperature) learned in a
    hand-written loop, as Golden Stick's callbacks: ``life.plan(RunPlan(total_epochs=E), 0)``
    before learning, ``life.start_epoch(e)`` before each epoch (1-based),
    ``life.after_optimizer(step)`` after each ``optimizer.step()`` (steps done so far)."""
    from n2q.train.lifecycle import Lifecycle

    net = model.__dict__.get("_n2q_view") if not hasattr(model, "cells") else model
    if net is None:
        raise UserError("lifecycle(model): the model has no n2q quantizer (use "
                        "n2q.quantize_model first)")
    return Lifecycle(net)


def _device(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _put_weight_quantizer(layer: nn.Module, spec: QWeight) -> None:
    if getattr(layer, "transposed", False):
        raise UserError(f"quantize_model: transposed convolutions are not supported "
                        f"({type(layer).__name__}): add its name to skip=")
    quantizer = spec.build().to(layer.weight.device)
    layer.__class__ = _quantized_class(type(layer), _QuantizedLayer)
    layer.weight_quantizer = quantizer
    if getattr(quantizer, "replaces_weight", False):
        # protocol: the quantizer learns its own parameters instead of the float weight
        layer.weight.requires_grad_(False)


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
