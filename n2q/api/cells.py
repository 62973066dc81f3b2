"""Changing the cells of a built network from Python: quantizers, solvers, fillers,
activations (what the seed does with ``cell.quantizer = ...``, ``set_solver_parameter``,
``set_weights_filler(refill=True)``, ``cell.activation = ...``).

Each change is written into the cell's INI section as the keys it stands for, then the part
it concerns is rebuilt by n2q's own reader of those keys. So the learning loop (which reads
the solver keys of each cell when it builds its optimizer), the weights folders, fusion and
``Network.to_ini()`` all see the cell as an INI file with those keys would make it.
"""

from __future__ import annotations

from typing import Any

from n2q.api.keys import camel_keys, scratch_section, set_entries
from n2q.api.settings import (
    SOLVER_KINDS,
    Activation,
    Filler,
    QAct,
    QWeight,
    Solver,
    activation_keys,
    section_for,
)
from n2q.errors import UserError

_QUANTIZER_SLOTS = (("weight", QWeight, "weight_quantizer"), ("act", QAct, "act_quantizer"))


def _section(cell: Any, prefix: str = "") -> Any:
    sec = section_for(cell, prefix) if prefix else getattr(cell, "section", None)
    if sec is None:
        raise UserError(f"cell {getattr(cell, 'name', cell)!r} has no INI section: build the "
                        "network with n2q.Network (INI, ONNX or layers)")
    return sec


def _device_of(cell: Any) -> Any:
    tensor = next(iter(cell.parameters(recurse=False)), None)
    if tensor is None:
        tensor = next(iter(cell.buffers(recurse=False)), None)
    return None if tensor is None else (tensor.device, tensor.dtype)


def set_quantizer(cell: Any, *, weight: QWeight | bool | None = None,
                  act: QAct | bool | None = None) -> None:
    """Put quantizers on a cell: ``set_quantizer(cell, weight=QWeight("SAT", range=15))``;
    ``False`` removes one, None leaves it. A quantizer of the same method as the one it
    replaces keeps its learned state (SAT's alpha, LSQ's step size), as the seed's
    ``set_range`` on the existing quantizer does."""
    for kind, spec_cls, attr in _QUANTIZER_SLOTS:
        spec = weight if kind == "weight" else act
        if spec is None:
            continue
        prefix = spec_cls.PREFIX
        sec = _section(cell, prefix)
        drop = (prefix + ".", prefix + "Solver")
        if spec is False:
            set_entries(sec, {}, drop)
            sec.entries.pop(prefix, None)
            setattr(cell, attr, None)
            continue
        if not isinstance(spec, spec_cls):
            raise UserError(f"set_quantizer({kind}=...): expected an n2q.{spec_cls.__name__}, "
                            f"got {type(spec).__name__}")
        quantizer = spec.build(cell)   # checks against the cell (Conv/Fc for QWeight...)
        old = getattr(cell, attr, None)
        if old is not None and type(old) is type(quantizer):
            try:
                quantizer.load_state_dict(old.state_dict())
            except RuntimeError:
                pass   # another shape of state: the new one starts from its settings
        where = _device_of(cell)
        if where is not None:
            quantizer.to(device=where[0], dtype=where[1])
        set_entries(sec, spec.keys(), drop if spec.solver is not None else (prefix + ".",))
        setattr(cell, attr, quantizer)
        _bind(cell, quantizer)


def _bind(cell: Any, quantizer: Any) -> None:
    """The protocol's first call, as at build time, with the network the cell belongs to."""
    from n2q.api.network import NETWORK_OF

    network = NETWORK_OF.get(cell)
    if network is not None and network() is not None:
        quantizer.bind(cell, network())


def change_quantizer(cell: Any, kind: str = "weight", **changes: Any) -> None:
    """Change some settings of a cell's quantizer between two phases, keeping the others
    and its learned state: ``change_quantizer(cell, range=15, apply_quantization=True)``."""
    slots = {k: cls for k, cls, _ in _QUANTIZER_SLOTS}
    if kind not in slots:
        raise UserError(f"change_quantizer(kind={kind!r}): use 'weight' or 'act'")
    spec = slots[kind].of(cell)
    if spec is None:
        raise UserError(f"cell {cell.name!r} has no {slots[kind].PREFIX} quantizer to change: "
                        "use n2q.set_quantizer")
    set_quantizer(cell, **{kind: spec.replace(**changes)})


def quantizer_settings(cell: Any, kind: str = "weight") -> QWeight | QAct | None:
    """The settings of a cell's quantizer, as written in (or into) its section."""
    return (QWeight if kind == "weight" else QAct).of(cell)


def set_solver(cell: Any, solver: Solver | None = None, *, kind: str = "solver",
               **keys: Any) -> None:
    """Per-cell solver settings: ``set_solver(cell, learning_rate=0.05, momentum=0.9)``
    (``Solvers.*``), ``kind="weights_solver"`` / ``"bias_solver"`` / ``"scale_solver"`` for
    one parameter kind. Taken into account by the next :func:`n2q.learn`."""
    if kind not in SOLVER_KINDS:
        raise UserError(f"set_solver(kind={kind!r}): valid: {', '.join(SOLVER_KINDS)}")
    spec = solver if solver is not None else Solver(**keys)
    if solver is not None and keys:
        raise UserError("set_solver: give a Solver or keywords, not both")
    set_entries(_section(cell), spec.under(SOLVER_KINDS[kind]))


def set_solver_parameter(cell: Any, name: str, value: Any) -> None:
    """The seed's ``cell.set_solver_parameter("learning_rate", 0.05)`` (``Solvers.*``). The
    key name is checked now; the cell's solver keys together (a CosineDecay policy needs
    MaxIterations...) when the next :func:`n2q.learn` reads them."""
    from n2q.train.solver_keys import check_solver_keys

    keys = {f"Solvers.{k}": v for k, v in camel_keys({name: value}).items()}
    check_solver_keys(scratch_section(getattr(cell, "name", "cell"), keys))
    set_entries(_section(cell), keys)


def set_filler(cell: Any, weights: Filler | None = None, bias: Filler | None = None, *,
               refill: bool = True) -> None:
    """Fillers of a Conv / Fc cell; ``refill`` draws the weights (and bias) again now, from
    the torch generator (seed it with :func:`n2q.seed`)."""
    from n2q.net.fillers import make_filler

    if not hasattr(cell, "reset_parameters"):
        raise UserError(f"cell {cell.name!r} ({cell.type}) has no weights to fill")
    keys: dict[str, str] = {}
    if weights is not None:
        keys.update(weights.under("WeightsFiller"))
    if bias is not None:
        keys.update(bias.under("BiasFiller"))
    sec = _section(cell)
    set_entries(sec, keys)
    if refill:
        cell.reset_parameters(make_filler(sec, "WeightsFiller"), make_filler(sec, "BiasFiller"))


def set_activation(cell: Any, activation: Activation | str) -> None:
    """The cell's activation function: ``set_activation(cell, "Linear")`` (with an act
    quantizer such as SAT's, which clips at 0 itself, as the seed does)."""
    from n2q.net.activations import make_activation

    if not getattr(cell, "HAS_ACTIVATION", False):
        raise UserError(f"cell {cell.name!r} ({cell.type}) has no activation function")
    keys = activation_keys(activation)
    module = make_activation(scratch_section(cell.name, keys))
    set_entries(_section(cell), keys, ("ActivationFunction.",))
    where = _device_of(cell)
    cell.activation = module if where is None else module.to(device=where[0], dtype=where[1])


def activation_name(cell: Any) -> str:
    """``"Rectifier"``, ``"Linear"``... of a cell (``"Linear"`` when it has none)."""
    name = getattr(cell.activation, "name", None)
    return name if isinstance(name, str) else "Linear"
