"""N2D2's solver keys of a cell section, read into one :class:`SolverSpec` per parameter kind.

Keys (spec/network.md, "Solvers"): in a cell section, ``Solvers.K`` applies to the weights and
the biases (BatchNorm: scales and biases), ``WeightsSolver.K`` / ``BiasSolver.K`` /
``ScaleSolver.K`` to one kind and win over ``Solvers.K``; ``Solvers=`` / ``WeightsSolver=`` /
``BiasSolver=`` / ``ScaleSolver=`` choose the type. Quantizer parameters get
``QWeightSolver[.K]`` / ``QActSolver[.K]`` groups (type also from ``QWeight.Solver`` /
``QAct.Solver``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from n2q.train.schedules import POLICIES, Schedule, schedule_problem

SOLVER_TYPES = ("SGD", "Adam")
SCHEDULE_KEYS = ("LearningRate", "LearningRatePolicy", "LearningRateStepSize",
                 "LearningRateDecay", "Power", "MaxIterations", "WarmUpDuration",
                 "WarmUpLRFrac", "MinDecay", "IterationSize")
SGD_KEYS = SCHEDULE_KEYS + ("Momentum", "Decay", "Clamping", "PolyakMomentum",
                            "QuantizationLevels")
# n2q: Adam also follows the learning-rate schedule and IterationSize (N2D2's Adam has neither)
ADAM_KEYS = SCHEDULE_KEYS + ("Beta1", "Beta2", "Epsilon", "Clamping")
DEFAULT_LR = {"SGD": 0.01, "Adam": 0.001}

# parameter kinds -> (type key, key prefixes from weakest to strongest)
KIND_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "weights": ("WeightsSolver", ("Solvers.", "WeightsSolver.")),
    "biases": ("BiasSolver", ("Solvers.", "BiasSolver.")),
    "scales": ("ScaleSolver", ("Solvers.", "ScaleSolver.")),
    "qweight": ("QWeightSolver", ("QWeightSolver.",)),
    "qact": ("QActSolver", ("QActSolver.",)),
}
SOLVER_PREFIXES = ("Solvers.", "WeightsSolver.", "BiasSolver.", "ScaleSolver.",
                   "QWeightSolver.", "QActSolver.")


@dataclass(frozen=True)
class SolverSpec:
    """Everything one parameter group needs: type, update keys and schedule."""

    type: str = "SGD"
    schedule: Schedule = field(default_factory=Schedule)
    momentum: float = 0.0
    decay: float = 0.0
    clamp_min: float | None = None
    clamp_max: float | None = None
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8


# --------------------------------------------------------------------------------------------
# reading the keys
# --------------------------------------------------------------------------------------------
def parse_clamping(text: str) -> tuple[float | None, float | None]:
    """``"min:max"`` / ``":max"`` / ``"min:"`` / ``""`` -> (min, max); ValueError when bad."""
    text = text.strip()
    if not text:
        return None, None
    if text.count(":") != 1:
        raise ValueError(text)
    low, high = (part.strip() for part in text.split(":"))
    lo = float(low) if low else None
    hi = float(high) if high else None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(text)
    return lo, hi


class _KeyReader:
    """Reads one solver key for one parameter kind: the strongest prefix that has it wins."""

    def __init__(self, section: Any, prefixes: tuple[str, ...]):
        self.section = section
        self.prefixes = prefixes

    def full_key(self, key: str) -> str | None:
        if self.section is None:
            return None
        for prefix in reversed(self.prefixes):
            if prefix + key in self.section:
                return prefix + key
        return None

    def read(self, key: str, kind: str, default: Any) -> Any:
        full = self.full_key(key)
        if full is None:
            return default
        return getattr(self.section, kind)(full)


def solver_type(section: Any, kind: str) -> str:
    """The solver type of a parameter kind: ``WeightsSolver=`` etc., then ``Solvers=``."""
    type_key, _ = KIND_KEYS[kind]
    candidates = [type_key] if kind in ("qweight", "qact") else [type_key, "Solvers"]
    if kind == "qweight":
        candidates.append("QWeight.Solver")
    if kind == "qact":
        candidates.append("QAct.Solver")
    for key in candidates:
        if section is not None and key in section:
            text = section.str(key)
            for name in SOLVER_TYPES:
                if text.strip().lower() == name.lower():
                    return name
            raise section.error(key, f"unknown solver '{text}'; valid: {', '.join(SOLVER_TYPES)}")
    return "SGD"


def read_solver_spec(section: Any, kind: str) -> SolverSpec:
    """The SolverSpec of one parameter kind of a cell section (None: all defaults)."""
    stype = solver_type(section, kind)
    reader = _KeyReader(section, KIND_KEYS[kind][1])
    _refuse_foreign_keys(section, reader, stype)
    schedule = Schedule(
        learning_rate=reader.read("LearningRate", "float", DEFAULT_LR[stype]),
        policy=_read_policy(section, reader),
        step_size=reader.read("LearningRateStepSize", "int", 1),
        decay=reader.read("LearningRateDecay", "float", 0.1),
        power=reader.read("Power", "float", 0.0),
        max_iterations=reader.read("MaxIterations", "int", 0),
        warm_up_duration=reader.read("WarmUpDuration", "int", 0),
        warm_up_lr_frac=reader.read("WarmUpLRFrac", "float", 0.25),
        min_decay=reader.read("MinDecay", "float", 0.0),
        iteration_size=reader.read("IterationSize", "int", 1),
    )
    problem = schedule_problem(schedule)
    if problem is not None:
        key, message = problem
        # a missing key is reported where the policy that needs it is written
        where = reader.full_key(key) or reader.full_key("LearningRatePolicy")
        raise section.error(where, f"{key} {message}")
    clamp_min, clamp_max = _read_clamping(section, reader)
    _check_sgd_extras(section, reader, stype)
    return SolverSpec(
        type=stype, schedule=schedule,
        momentum=reader.read("Momentum", "float", 0.0),
        decay=reader.read("Decay", "float", 0.0),
        clamp_min=clamp_min, clamp_max=clamp_max,
        beta1=reader.read("Beta1", "float", 0.9),
        beta2=reader.read("Beta2", "float", 0.999),
        epsilon=reader.read("Epsilon", "float", 1e-8),
    )


def _read_policy(section: Any, reader: _KeyReader) -> str:
    full = reader.full_key("LearningRatePolicy")
    return "None" if full is None else section.enum(full, POLICIES)


def _read_clamping(section: Any, reader: _KeyReader) -> tuple[float | None, float | None]:
    full = reader.full_key("Clamping")
    if full is None:
        return None, None
    text = section.str(full)
    try:
        return parse_clamping(text)
    except ValueError:
        raise section.error(full, f"'{text}' is not a clamping range: write min:max, :max or "
                            "min: (e.g. -1.0:1.0)") from None


def _check_sgd_extras(section: Any, reader: _KeyReader, stype: str) -> None:
    if stype != "SGD":
        return
    if not reader.read("PolyakMomentum", "bool", True):
        raise section.error(reader.full_key("PolyakMomentum"),
                            "PolyakMomentum=0 is not supported: n2q's SGD uses heavy-ball "
                            "momentum (v = Momentum*v - lr*(g + Decay*w)); remove the key")
    if reader.read("QuantizationLevels", "int", 0) != 0:
        raise section.error(reader.full_key("QuantizationLevels"),
                            "solver weight quantization is not supported: quantize with "
                            "QWeight=SAT (quant.md) and remove this key")


def _refuse_foreign_keys(section: Any, reader: _KeyReader, stype: str) -> None:
    """A key of the other solver type (Momentum for Adam, Beta1 for SGD) is an error."""
    if section is None:
        return
    allowed = SGD_KEYS if stype == "SGD" else ADAM_KEYS
    prefixes = reader.prefixes
    if len(prefixes) > 1 and any(k in section for k in ("WeightsSolver", "BiasSolver",
                                                         "ScaleSolver")):
        # types differ per kind: a shared Solvers.K may be meant for the other kind's type
        prefixes = prefixes[1:]
    for prefix in prefixes:
        for key in section.subkeys(prefix):
            if key not in allowed and key in SGD_KEYS + ADAM_KEYS:
                raise section.error(prefix + key, f"{key} is not a key of the {stype} solver "
                                    f"(its keys: {', '.join(allowed)})")


def check_solver_keys(section: Any) -> None:
    """Strict solver keys: an unknown ``Solvers.K`` etc. is an error with a did-you-mean."""
    known = set(SGD_KEYS) | set(ADAM_KEYS)
    for prefix in SOLVER_PREFIXES:
        for key in section.subkeys(prefix):
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
                hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
                raise section.error(prefix + key, f"unknown solver key{hint}; valid: "
                                    f"{', '.join(sorted(known))}")
