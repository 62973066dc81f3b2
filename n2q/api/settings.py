"""Settings objects of the Python API: quantizers, solvers, fillers, activations.

Each is the INI keys it stands for (``QWeight("SAT", range=15)`` = ``QWeight=SAT``,
``QWeight.Range=15``), checked at construction by the INI reader of those keys, so that a bad
value gets the same message as in an INI file. Quantizers of every registered method work the
same way: the method name picks the class in the registry, the keywords are its INI sub-keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from n2q.api.keys import KeySet, camel_keys, ini_key, scratch_section

SOLVER_KINDS = {"solver": "Solvers", "weights_solver": "WeightsSolver",
                "bias_solver": "BiasSolver", "scale_solver": "ScaleSolver"}


class Solver(KeySet):
    """A solver's keys: ``Solver(learning_rate=0.05, momentum=0.9, learning_rate_policy=
    "CosineDecay")``; ``type`` is ``"SGD"`` (default) or ``"Adam"``. Where it goes decides its
    INI prefix (``solver=`` -> ``Solvers.*``, ``weights_solver=`` -> ``WeightsSolver.*``,
    a quantizer's ``solver=`` -> ``QWeightSolver.*`` / ``QActSolver.*``)."""

    def __init__(self, type: str | None = None, **keys: Any) -> None:  # noqa: A002
        self.type = type
        self.values = {k: v for k, v in keys.items() if v is not None}
        super().__init__(camel_keys(self.values))
        for prefix, kind in (("Solvers", "weights"), ("QWeightSolver", "qweight")):
            check_solver(self.under(prefix), kind)

    def under(self, prefix: str) -> dict[str, str]:
        """The keys written under ``prefix`` (``Solvers``, ``QActSolver``...)."""
        keys = {prefix: self.type} if self.type else {}
        keys.update({f"{prefix}.{k}": v for k, v in self.keys().items()})
        return keys


def check_solver(keys: Mapping[str, str], kind: str) -> None:
    """Read ``keys`` as n2q's solver reader does (names, types, schedule consistency)."""
    from n2q.train.solver_keys import check_solver_keys, read_solver_spec

    sec = scratch_section("solver", keys)
    check_solver_keys(sec)
    read_solver_spec(sec, kind)


class Filler(KeySet):
    """A weights or bias filler: ``Filler("Xavier", variance_norm="FanOut", scaling=1.0)``
    (``XavierFiller`` written in full works too)."""

    def __init__(self, name: str, **options: Any) -> None:
        from n2q.net.fillers import FILLERS, make_filler

        self.name = name if name in FILLERS or name.endswith("Filler") else name + "Filler"
        super().__init__(camel_keys(options))
        make_filler(scratch_section("filler", self.under("WeightsFiller")), "WeightsFiller")

    def under(self, key: str) -> dict[str, str]:
        return {key: self.name, **{f"{key}.{k}": v for k, v in self.keys().items()}}

    def __repr__(self) -> str:
        return f"Filler({self.name!r}{''.join(f', {k}={v}' for k, v in self.keys().items())})"


class Activation(KeySet):
    """An activation function: ``Activation("Rectifier", leak_slope=0.1)``; a plain name is
    accepted wherever an Activation is (``activation="Linear"``)."""

    def __init__(self, name: str, **options: Any) -> None:
        from n2q.net.activations import make_activation

        self.name = name
        super().__init__(camel_keys(options))
        make_activation(scratch_section("activation", self.under()))

    def under(self, key: str = "ActivationFunction") -> dict[str, str]:
        return {key: self.name, **{f"{key}.{k}": v for k, v in self.keys().items()}}

    def __repr__(self) -> str:
        return (f"Activation({self.name!r}"
                f"{''.join(f', {k}={v}' for k, v in self.keys().items())})")


def activation_keys(value: Activation | str) -> dict[str, str]:
    return (value if isinstance(value, Activation) else Activation(value)).under()


class _QuantizerSpec(KeySet):
    """A quantizer of a registered method with its INI sub-keys (``PREFIX.<Key>``)."""

    PREFIX = ""

    def __init__(self, method: str, *, solver: Solver | None = None, **settings: Any) -> None:
        self.method = method
        # by INI sub-key, so that ``range=`` and ``Range=`` (read back by :meth:`of`) agree
        self.settings = {ini_key(k): v for k, v in settings.items() if v is not None}
        self.solver = solver
        keys = {self.PREFIX: method, **camel_keys(self.settings, self.PREFIX + ".")}
        if solver is not None:
            keys.update(solver.under(self.PREFIX + "Solver"))
        super().__init__(keys)
        self.build()   # the INI reader's checks, messages at the INI key
        if solver is not None:
            check_solver(keys, self.PREFIX.lower())

    @classmethod
    def methods(cls) -> list[str]:
        """The registered method names (``["LSQ", "SAT", ...]``)."""
        return sorted(_registry(cls.PREFIX))

    def replace(self, **changes: Any) -> Any:
        """The same method with some settings changed (``q.replace(range=15)``): what the
        seed's ``set_range`` / ``set_quantization`` do between two phases."""
        solver = changes.pop("solver", self.solver)
        changed = {ini_key(k): v for k, v in changes.items()}
        return type(self)(self.method, solver=solver, **{**self.settings, **changed})

    def build(self, cell: Any = None) -> Any:
        """The quantizer module (``nn.Module``), built by the registry from these keys."""
        from n2q.quant import build_act_quantizer, build_weight_quantizer

        sec = scratch_section(getattr(cell, "name", None) or self.PREFIX, self.keys())
        build = build_weight_quantizer if self.PREFIX == "QWeight" else build_act_quantizer
        return build(sec, cell)

    @classmethod
    def of(cls, cell: Any) -> Any:
        """The quantizer settings of a built cell (from its section), or None."""
        sec = section_for(cell, cls.PREFIX)
        if sec is None or cls.PREFIX not in sec:
            return None
        settings = {k: sec.str(f"{cls.PREFIX}.{k}") for k in sec.subkeys(cls.PREFIX + ".")}
        solver_keys = {k: sec.str(f"{cls.PREFIX}Solver.{k}")
                       for k in sec.subkeys(cls.PREFIX + "Solver.")}
        solver_type = sec.str(cls.PREFIX + "Solver") if cls.PREFIX + "Solver" in sec else None
        solver = Solver(solver_type, **solver_keys) if solver_keys or solver_type else None
        return cls(sec.str(cls.PREFIX), solver=solver, **settings)


class QWeight(_QuantizerSpec):
    """A weight quantizer (``QWeight=``) for Conv / Fc cells and torch Conv2d / Linear:
    ``QWeight("SAT", range=15, apply_scaling=False, apply_quantization=True)``,
    ``QWeight("LSQ", range=255)``; the keywords are the method's ``QWeight.*`` keys."""

    PREFIX = "QWeight"


class QAct(_QuantizerSpec):
    """An activation quantizer (``QAct=``): ``QAct("SAT", alpha=6.0, range=15,
    solver=Solver(learning_rate=0.05))``; the keywords are the method's ``QAct.*`` keys."""

    PREFIX = "QAct"


def _registry(prefix: str) -> dict[str, type]:
    from n2q.quant import ACT_QUANTIZERS, WEIGHT_QUANTIZERS

    return WEIGHT_QUANTIZERS if prefix == "QWeight" else ACT_QUANTIZERS


def section_for(cell: Any, prefix: str) -> Any:
    """The section a cell's ``QWeight`` / ``QAct`` keys are read from (n2q.quant.attach)."""
    if prefix == "QAct":
        return getattr(cell, "act_section", None) or getattr(cell, "section", None)
    return getattr(cell, "section", None)
