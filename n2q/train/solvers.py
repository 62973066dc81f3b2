"""N2D2 solvers (SGD, Adam) as one torch Optimizer with a parameter group per cell and kind.

Keys (spec/network.md, "Solvers"): in a cell section, ``Solvers.K`` applies to the weights and
the biases (BatchNorm: scales and biases), ``WeightsSolver.K`` / ``BiasSolver.K`` /
``ScaleSolver.K`` to one kind and win over ``Solvers.K``; ``Solvers=`` / ``WeightsSolver=`` /
``BiasSolver=`` / ``ScaleSolver=`` choose the type. Quantizer parameters get
``QWeightSolver[.K]`` / ``QActSolver[.K]`` groups (type also from ``QWeight.Solver`` /
``QAct.Solver``).

Update of one SGD group (N2D2's convention, lr inside the momentum):
    g <- mean gradient over IterationSize batches
    v <- Momentum * v - lr * (g + Decay * w)        (v = 0 initially)
    w <- w + v ;  w <- clamp(w, min, max)            (Clamping "min:max", ":max", "min:")
Adam is PyTorch's Adam (bias-corrected moments), which is N2D2's update.
All tensor work uses torch._foreach_* ops: one kernel family per group, no per-parameter Python.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from n2q.errors import UserError
from n2q.train.schedules import POLICIES, STEP_POLICIES, Schedule, schedule_problem

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


# --------------------------------------------------------------------------------------------
# the optimizer
# --------------------------------------------------------------------------------------------
class N2D2Optimizer(torch.optim.Optimizer):
    """SGD/Adam groups with N2D2 schedules, IterationSize accumulation and clamping.

    Call ``step()`` after EVERY backward: a group whose IterationSize is k updates on every
    k-th call with the mean of the k accumulated gradients and then clears its gradients;
    in between its gradients keep accumulating. Do not call ``zero_grad`` in the loop.
    """

    def __init__(self, groups: list[dict[str, Any]], batch_size: int,
                 on_rate_change: Callable[[str], None] | None = None):
        self.specs: list[SolverSpec] = [g.pop("spec") for g in groups]
        self.batch_size = batch_size
        self.on_rate_change = on_rate_change
        self.rate_override: float | None = None  # -find-lr: one lr for every group
        for g in groups:
            g.setdefault("updates", 0)   # updates done by this group
            g.setdefault("passes", 0)    # batches accumulated since its last update
            g.setdefault("name", "")
        super().__init__(groups, {"lr": 0.0})
        for group, spec in zip(self.param_groups, self.specs, strict=True):
            group["lr"] = spec.schedule.rate(0, batch_size)

    @property
    def steps(self) -> int:
        """Optimizer steps done (resumed runs included: the counts are in the state dict):
        the updates of the group that updates most often (IterationSize differs per group)."""
        return max((g["updates"] for g in self.param_groups), default=0)

    @property
    def iteration_size(self) -> int:
        """Batches between two steps of the group that updates most often."""
        return min((s.schedule.iteration_size for s in self.specs), default=1)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            with torch.enable_grad():
                closure()
        logged: set[tuple[int, float]] = set()
        # groups updating now with identical hyper-parameters share one series of foreach
        # calls (a ResNet has ~60 groups: one kernel series per group would dominate small
        # steps); key -> (spec, k, lr, t, params, grads)
        buckets: dict[tuple, tuple[SolverSpec, int, float, int, list, list]] = {}
        for group, spec in zip(self.param_groups, self.specs, strict=True):
            group["passes"] += 1
            if group["passes"] < spec.schedule.iteration_size:
                continue
            k = group["passes"]
            group["passes"] = 0
            lr = self._next_rate(group, spec, logged)
            group["updates"] += 1
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            t = group["updates"] if spec.type == "Adam" else 0
            key = (spec.type, k, lr, t, spec.momentum, spec.decay, spec.clamp_min,
                   spec.clamp_max, spec.beta1, spec.beta2, spec.epsilon)
            bucket = buckets.setdefault(key, (spec, k, lr, t, [], []))
            bucket[4].extend(params)
            bucket[5].extend(p.grad for p in params)
        for spec, k, lr, t, params, grads in buckets.values():
            self._update(spec, k, lr, t, params, grads)

    def _next_rate(self, group: dict[str, Any], spec: SolverSpec,
                   logged: set[tuple[int, float]]) -> float:
        lr = spec.schedule.rate(group["updates"], self.batch_size)
        if self.rate_override is not None:
            lr = self.rate_override
        else:
            self._log_rate_change(group, spec, lr, logged)
        group["lr"] = lr
        return lr

    def _update(self, spec: SolverSpec, k: int, lr: float, t: int,
                params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if k > 1:
            torch._foreach_div_(grads, float(k))
        if spec.type == "SGD":
            self._sgd(params, grads, spec, lr)
        else:
            self._adam(params, grads, spec, lr, t)
        if spec.clamp_min is not None:
            torch._foreach_clamp_min_(params, spec.clamp_min)
        if spec.clamp_max is not None:
            torch._foreach_clamp_max_(params, spec.clamp_max)
        for p in params:
            p.grad = None

    def _sgd(self, params: list[torch.Tensor], grads: list[torch.Tensor], spec: SolverSpec,
             lr: float) -> None:
        if spec.decay != 0.0:
            torch._foreach_add_(grads, params, alpha=spec.decay)  # g + Decay * w
        if spec.momentum == 0.0:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        velocities = [self._buffer(p, "velocity") for p in params]
        torch._foreach_mul_(velocities, spec.momentum)
        torch._foreach_add_(velocities, grads, alpha=-lr)
        torch._foreach_add_(params, velocities)

    def _adam(self, params: list[torch.Tensor], grads: list[torch.Tensor], spec: SolverSpec,
              lr: float, t: int) -> None:
        means = [self._buffer(p, "exp_avg") for p in params]
        squares = [self._buffer(p, "exp_avg_sq") for p in params]
        torch._foreach_lerp_(means, grads, 1.0 - spec.beta1)
        torch._foreach_mul_(squares, spec.beta2)
        torch._foreach_addcmul_(squares, grads, grads, value=1.0 - spec.beta2)
        correction1 = 1.0 - spec.beta1 ** t
        correction2 = 1.0 - spec.beta2 ** t
        denominators = torch._foreach_sqrt(squares)
        torch._foreach_div_(denominators, correction2 ** 0.5)
        torch._foreach_add_(denominators, spec.epsilon)
        torch._foreach_addcdiv_(params, means, denominators, value=-lr / correction1)

    def _buffer(self, p: torch.Tensor, name: str) -> torch.Tensor:
        state = self.state[p]
        if name not in state:
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state[name]

    def _log_rate_change(self, group: dict[str, Any], spec: SolverSpec, lr: float,
                         logged: set[tuple[int, float]]) -> None:
        """N2D2's "Learning rate after N(xB) iteration(s): lr" when the step changes."""
        s = spec.schedule
        updates = group["updates"]
        if self.on_rate_change is None or updates == 0 or s.policy not in STEP_POLICIES:
            return
        if s.step(updates, self.batch_size) == s.step(updates - 1, self.batch_size):
            return
        if s.step_size <= s.iteration_size * self.batch_size:
            return  # the rate changes at every update: a line per batch would drown the rest
        if (updates, lr) in logged:
            return
        logged.add((updates, lr))
        self.on_rate_change(f"Learning rate after {updates}(x{s.iteration_size * self.batch_size})"
                            f" iteration(s): {lr:.4g}")


# --------------------------------------------------------------------------------------------
# parameter groups of a network
# --------------------------------------------------------------------------------------------
def _param_kind(cell: Any, name: str, param: torch.Tensor) -> str:
    """weights / biases / scales / qweight / qact for one parameter of a cell."""
    if _belongs_to(getattr(cell, "weight_quantizer", None), param):
        # a quantizer that replaces the weight (SLB's logits) is learned as the cell's weights
        return "weights" if _replaces_weight(cell) else "qweight"
    if _belongs_to(getattr(cell, "act_quantizer", None), param):
        return "qact"
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("bias", "biases"):
        return "biases"
    if getattr(cell, "type", "") == "BatchNorm":
        return "scales"
    return "weights"


def _replaces_weight(cell: Any) -> bool:
    """Protocol attribute ``replaces_weight``: the cell's float weight is not used."""
    return bool(getattr(getattr(cell, "weight_quantizer", None), "replaces_weight", False))


def _belongs_to(module: Any, param: torch.Tensor) -> bool:
    if module is None or not isinstance(module, torch.nn.Module):
        return False
    return any(p is param for p in module.parameters())


def cell_parameter_groups(name: str, cell: Any) -> list[dict[str, Any]]:
    """One group per parameter kind of a cell, each with its SolverSpec under ``spec``."""
    section = getattr(cell, "section", None)
    if section is not None:
        check_solver_keys(section)
    by_kind: dict[str, list[torch.Tensor]] = {}
    unused = getattr(cell, "weight", None) if _replaces_weight(cell) else None
    for pname, param in cell.named_parameters():
        if param.requires_grad and param is not unused:
            by_kind.setdefault(_param_kind(cell, pname, param), []).append(param)
    return [{"params": params, "spec": read_solver_spec(section, kind), "name": f"{name}/{kind}"}
            for kind, params in by_kind.items()]


def check_network_solvers(net: Any) -> None:
    """Every run, learning or not, before the data loads: the solver keys of every cell are
    names n2q knows. Their values are read when learning (``make_optimizer``): a test-only
    run may have no Learn partition, hence ``[sp]_EpochSize`` = 0 in a StepSize."""
    for cell in net.cells.values():
        section = getattr(cell, "section", None)
        if section is not None:
            check_solver_keys(section)


def make_optimizer(net: Any, batch_size: int,
                   on_rate_change: Callable[[str], None] | None = None) -> N2D2Optimizer:
    """The optimizer of a whole network: the groups of every cell of ``net.cells``."""
    groups: list[dict[str, Any]] = []
    for name, cell in net.cells.items():
        groups.extend(cell_parameter_groups(name, cell))
    if not groups:
        raise UserError("the network has no learnable parameter: nothing to learn")
    return N2D2Optimizer(groups, batch_size, on_rate_change)
