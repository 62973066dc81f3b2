"""Learning-rate policies of N2D2's SGD solver (spec/network.md, "Learning-rate schedule").

Two clocks drive them:
- ``seen`` = stimuli seen before this update = updates x IterationSize x BatchSize, and
  ``step = seen // LearningRateStepSize`` (StepSize is in stimuli, e.g. ``[sp]_EpochSize``);
- ``it`` = the number of updates already done (PolyDecay, InvDecay).
The first update uses step 0 and it 0, as N2D2 does (its log prints "Learning rate after
50(x128) iteration(s): 0.04965" for lr0=0.05, decay 0.993 and an epoch of 50 batches).

Warm-up (``WarmUpDuration`` W, ``WarmUpLRFrac`` f): the rate rises linearly from f*lr0 to lr0
over W, then the policy runs over the remaining MaxIterations - W. CosineDecay counts W in
steps (N2D2); PolyDecay (an n2q extension, for Golden Stick's ``poly`` recipe of seeds 000/002:
5 warm-up epochs 0.01 -> 0.1, then 0.1*(1 - progress)^2) counts W in updates, its own clock:
    it < W:  lr0 * (f + (1 - f) * it / W)
    it >= W: lr0 * (1 - (min(it, MaxIterations) - W) / (MaxIterations - W))^Power
Other policies have no warm-up: WarmUpDuration > 0 with them is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

POLICIES = ("None", "StepDecay", "ExponentialDecay", "InvTDecay", "PolyDecay", "InvDecay",
            "CosineDecay")
# policies whose clock is ``step`` (stimuli / StepSize) rather than the update count
STEP_POLICIES = ("StepDecay", "ExponentialDecay", "InvTDecay", "CosineDecay")
# policies with a linear warm-up (WarmUpDuration, WarmUpLRFrac)
WARM_UP_POLICIES = ("PolyDecay", "CosineDecay")


@dataclass(frozen=True)
class Schedule:
    """The schedule keys of one solver; ``rate(updates, batch_size)`` is the lr of the next
    update after ``updates`` updates."""

    learning_rate: float = 0.01
    policy: str = "None"
    step_size: int = 1
    decay: float = 0.1
    power: float = 0.0
    max_iterations: int = 0
    warm_up_duration: int = 0
    warm_up_lr_frac: float = 0.25
    min_decay: float = 0.0
    iteration_size: int = 1

    def step(self, updates: int, batch_size: int) -> int:
        seen = updates * self.iteration_size * batch_size
        return seen // self.step_size

    def rate(self, updates: int, batch_size: int) -> float:
        return _POLICY_RATE[self.policy](self, updates, batch_size)


def _none(s: Schedule, updates: int, batch_size: int) -> float:
    return s.learning_rate


def _step_decay(s: Schedule, updates: int, batch_size: int) -> float:
    return s.learning_rate * s.decay ** s.step(updates, batch_size)


def _exponential_decay(s: Schedule, updates: int, batch_size: int) -> float:
    return s.learning_rate * math.exp(-s.decay * s.step(updates, batch_size))


def _inv_t_decay(s: Schedule, updates: int, batch_size: int) -> float:
    return s.learning_rate / (1.0 + s.decay * s.step(updates, batch_size))


def _warm_up(s: Schedule, clock: int) -> float:
    """The rising rate during warm-up (clock < WarmUpDuration): f*lr0 -> lr0 linearly."""
    frac = s.warm_up_lr_frac
    return s.learning_rate * ((1.0 - frac) * clock / s.warm_up_duration + frac)


def _poly_decay(s: Schedule, updates: int, batch_size: int) -> float:
    warm = s.warm_up_duration
    if updates < warm:
        return _warm_up(s, updates)
    # past MaxIterations the update count stops (N2D2): the rate stays at its last value (0)
    it = min(updates, s.max_iterations)
    return s.learning_rate * (1.0 - (it - warm) / (s.max_iterations - warm)) ** s.power


def _inv_decay(s: Schedule, updates: int, batch_size: int) -> float:
    return s.learning_rate * (1.0 + s.decay * updates) ** (-s.power)


def _cosine_decay(s: Schedule, updates: int, batch_size: int) -> float:
    step = s.step(updates, batch_size)
    warm = s.warm_up_duration
    if step < warm:
        return _warm_up(s, step)
    # the cosine is held at its end value past MaxIterations instead of rising again
    progress = min(step - warm, s.max_iterations - warm) / (s.max_iterations - warm)
    cosine = (1.0 - s.min_decay) * 0.5 * (1.0 + math.cos(math.pi * progress)) + s.min_decay
    return s.learning_rate * max(0.0, cosine)


_POLICY_RATE: dict[str, Callable[[Schedule, int, int], float]] = {
    "None": _none,
    "StepDecay": _step_decay,
    "ExponentialDecay": _exponential_decay,
    "InvTDecay": _inv_t_decay,
    "PolyDecay": _poly_decay,
    "InvDecay": _inv_decay,
    "CosineDecay": _cosine_decay,
}


def schedule_problem(s: Schedule) -> tuple[str, str] | None:
    """(key, message) when the keys cannot make a schedule, else None."""
    if s.iteration_size < 1:
        return "IterationSize", f"must be >= 1 (got {s.iteration_size})"
    if s.policy in STEP_POLICIES and s.step_size < 1:
        return ("LearningRateStepSize",
                f"must be >= 1 stimulus for LearningRatePolicy={s.policy} (got {s.step_size})")
    if s.policy in ("PolyDecay", "CosineDecay") and s.max_iterations < 1:
        return ("MaxIterations", f"must be > 0 for LearningRatePolicy={s.policy} "
                "(PolyDecay: in updates; CosineDecay: in steps, e.g. epochs x epoch size)")
    if s.warm_up_duration < 0:
        return "WarmUpDuration", "must be >= 0"
    if s.warm_up_duration > 0 and s.policy not in WARM_UP_POLICIES:
        return ("WarmUpDuration", f"has no effect with LearningRatePolicy={s.policy}: warm-up "
                f"exists for {' and '.join(WARM_UP_POLICIES)}; remove the key")
    if s.policy in WARM_UP_POLICIES and s.warm_up_duration >= s.max_iterations:
        return ("WarmUpDuration", f"({s.warm_up_duration}) must be smaller than MaxIterations "
                f"({s.max_iterations})")
    if not 0.0 <= s.warm_up_lr_frac <= 1.0:
        return "WarmUpLRFrac", f"must be in [0, 1] (got {s.warm_up_lr_frac})"
    return None
