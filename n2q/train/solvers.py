"""N2D2 solvers (SGD, Adam) as one torch Optimizer with a parameter group per cell and kind
(the keys of each group: n2q.train.solver_keys).

Update of one SGD group (N2D2's convention, lr inside the momentum):
    g <- mean gradient over IterationSize batches
    v <- Momentum * v - lr * (g + Decay * w)        (v = 0 initially)
    w <- w + v ;  w <- clamp(w, min, max)            (Clamping "min:max", ":max", "min:")
Adam is PyTorch's Adam (bias-corrected moments), which is N2D2's update.
All tensor work uses torch._foreach_* ops: one kernel family per group, no per-parameter Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from n2q.errors import UserError
from n2q.train.schedules import STEP_POLICIES
from n2q.train.solver_keys import SolverSpec, check_solver_keys, read_solver_spec


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
