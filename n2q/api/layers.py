"""Layers stacked in Python: each one is an INI layer section.

``Conv(6, 5, activation="Linear", no_bias=True, weight_quantizer=QWeight("SAT"))`` is
``Type=Conv NbOutputs=6 KernelDims=5 5 ActivationFunction=Linear NoBias=1 QWeight=SAT``.
Key names (and the activation, fillers, solvers, quantizers) are checked at construction by
the cell class's own readers; values that depend on the input shape (a kernel larger than the
input...) are checked when the network is built, with the layer's name in the message.
"""

from __future__ import annotations

from typing import Any

from n2q.api.keys import KeySet, camel_keys, scratch_section
from n2q.api.settings import (
    SOLVER_KINDS,
    Activation,
    Filler,
    QAct,
    QWeight,
    Solver,
    activation_keys,
)
from n2q.errors import UserError, did_you_mean

FILLER_KEYS = {"weights_filler": "WeightsFiller", "bias_filler": "BiasFiller"}


def layer_keys(**options: Any) -> dict[str, str]:
    """Python keywords -> a layer section's INI keys (activation, fillers, solvers and
    quantizers given as objects; anything else as ``snake_case`` of its INI key)."""
    keys: dict[str, str] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name == "activation":
            keys.update(activation_keys(value))
        elif name in FILLER_KEYS:
            keys.update(_typed(name, value, Filler).under(FILLER_KEYS[name]))
        elif name in SOLVER_KINDS:
            keys.update(_typed(name, value, Solver).under(SOLVER_KINDS[name]))
        elif name in ("weight_quantizer", "quantizer"):
            keys.update(_typed(name, value, QWeight).keys())
        elif name == "act_quantizer":
            keys.update(_typed(name, value, QAct).keys())
        else:
            keys.update(camel_keys({name: value}))
    return keys


def _typed(name: str, value: Any, cls: type) -> Any:
    if not isinstance(value, cls):
        raise UserError(f"{name}=: expected an n2q.{cls.__name__}, got {type(value).__name__}")
    return value


class Layer(KeySet):
    """A layer of any registered cell type: ``Layer("Pool", pool_dims=2, stride_dims=2,
    pooling="Max")``. ``name`` defaults to the type and its rank in the network
    (``conv1``, ``pool2``); ``inputs`` to the previous layer (or the provider)."""

    def __init__(self, type: str, *, name: str | None = None,  # noqa: A002
                 inputs: str | list[str] | None = None, **options: Any) -> None:
        from n2q.net import CELL_TYPES

        if type not in CELL_TYPES:
            raise UserError(f"unknown layer type '{type}'{did_you_mean(type, CELL_TYPES)}; "
                            f"valid: {', '.join(sorted(CELL_TYPES))}")
        self.type = type
        self.name = name
        self.inputs = [inputs] if isinstance(inputs, str) else inputs
        super().__init__({"Type": type, **layer_keys(**options)})
        self._check()

    def _check(self) -> None:
        from n2q.net import CELL_TYPES
        from n2q.net.activations import make_activation
        from n2q.net.fillers import make_filler
        from n2q.train.solver_keys import check_solver_keys

        cls = CELL_TYPES[self.type]
        sec = scratch_section(self.name or self.type, self.keys())
        cls.check_section_keys(sec)
        if cls.HAS_ACTIVATION:
            make_activation(sec)
        for key in FILLER_KEYS.values():
            if key + "." in cls.PREFIXES:      # cells with weights (Conv, Fc)
                make_filler(sec, key)
        check_solver_keys(sec)

    def section_keys(self, inputs: list[str]) -> dict[str, str]:
        """The section of this layer fed by ``inputs``."""
        return {"Input": ",".join(inputs), **self.keys()}


def Conv(nb_outputs: int, kernel_dims: int | tuple[int, int], **options: Any) -> Layer:  # noqa: N802
    """A convolution: ``Conv(16, 5, stride_dims=1, padding_dims=2, no_bias=True)``
    (``kernel_dims`` is width height, as in the INI ``KernelDims``)."""
    return Layer("Conv", nb_outputs=nb_outputs, kernel_dims=_pair(kernel_dims), **options)


def Fc(nb_outputs: int, **options: Any) -> Layer:  # noqa: N802
    """A fully connected layer: ``Fc(84, activation="Rectifier")``."""
    return Layer("Fc", nb_outputs=nb_outputs, **options)


def Pool(pool_dims: int | tuple[int, int], *, stride_dims: int | tuple[int, int] = 1,  # noqa: N802
         pooling: str = "Max", **options: Any) -> Layer:
    """A pooling layer, per channel: ``Pool(2, stride_dims=2, pooling="Max")``
    (``Mapping.ChannelsPerGroup=1``, the only mapping n2q pools with)."""
    options.setdefault("mapping_channels_per_group", 1)
    return Layer("Pool", pool_dims=_pair(pool_dims), stride_dims=_pair(stride_dims),
                 pooling=pooling, **options)


def BatchNorm(**options: Any) -> Layer:  # noqa: N802
    """A batch normalization: ``BatchNorm(activation="Rectifier", solver=Solver(...))``."""
    return Layer("BatchNorm", **options)


def Dropout(**options: Any) -> Layer:  # noqa: N802
    """A dropout layer: ``Dropout(dropout=0.5)``."""
    return Layer("Dropout", **options)


def Softmax(*, with_loss: bool = True, **options: Any) -> Layer:  # noqa: N802
    """The softmax output (``WithLoss=1``: learned with cross-entropy)."""
    return Layer("Softmax", with_loss=with_loss, **options)


def _pair(value: int | tuple[int, int] | list[int]) -> list[int]:
    return [int(value)] * 2 if isinstance(value, int) else [int(v) for v in value]


__all__ = ["Activation", "BatchNorm", "Conv", "Dropout", "Fc", "Filler", "Layer", "Pool",
           "Softmax", "layer_keys"]
