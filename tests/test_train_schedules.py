"""Every LearningRatePolicy against its formula (spec/network.md), numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from n2q.train.schedules import Schedule, schedule_problem


def rates(schedule: Schedule, updates: list[int], batch: int) -> list[float]:
    return [schedule.rate(u, batch) for u in updates]


def test_none_is_constant() -> None:
    s = Schedule(learning_rate=0.05)
    assert rates(s, [0, 1, 1000], 128) == [0.05, 0.05, 0.05]


def test_step_decay_counts_stimuli_like_lenet() -> None:
    # LeNet.ini: lr0 0.05, decay 0.993 per epoch of 6400 stimuli = 50 batches of 128
    s = Schedule(learning_rate=0.05, policy="StepDecay", step_size=6400, decay=0.993)
    got = rates(s, [0, 49, 50, 99, 100, 500], 128)
    want = [0.05, 0.05, 0.04965, 0.04965, 0.0493024, 0.05 * 0.993 ** 10]
    assert got == pytest.approx(want, rel=1e-5)


def test_exponential_decay() -> None:
    s = Schedule(learning_rate=0.1, policy="ExponentialDecay", step_size=256, decay=0.5)
    got = rates(s, [0, 1, 2, 3, 4], 128)
    assert got == pytest.approx([0.1, 0.1, 0.0606530660, 0.0606530660, 0.0367879441])


def test_inv_t_decay() -> None:
    s = Schedule(learning_rate=0.1, policy="InvTDecay", step_size=128, decay=0.5)
    assert rates(s, [0, 1, 3], 128) == pytest.approx([0.1, 0.1 / 1.5, 0.04])


def test_poly_decay_counts_updates_and_stops_at_max() -> None:
    s = Schedule(learning_rate=0.1, policy="PolyDecay", power=2.0, max_iterations=10)
    assert rates(s, [0, 5, 10, 12], 64) == pytest.approx([0.1, 0.025, 0.0, 0.0])


def test_inv_decay() -> None:
    s = Schedule(learning_rate=0.1, policy="InvDecay", decay=0.1, power=0.5)
    assert rates(s, [0, 30], 64) == pytest.approx([0.1, 0.05])


def test_cosine_decay_with_warm_up() -> None:
    s = Schedule(learning_rate=1.0, policy="CosineDecay", warm_up_duration=2,
                 warm_up_lr_frac=0.25, max_iterations=10)
    # warm-up: 0.25, 0.625; then 0.5*(1+cos(pi*(step-2)/8))
    got = rates(s, [0, 1, 2, 4, 6, 10, 12], 1)
    want = [0.25, 0.625, 1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.0, 0.0]
    assert got == pytest.approx(want, abs=1e-12)


def test_cosine_decay_min_decay_and_step_size() -> None:
    s = Schedule(learning_rate=0.2, policy="CosineDecay", max_iterations=8, min_decay=0.1,
                 step_size=100)
    # batch 50: 2 updates per step; update 8 -> step 4 -> half way -> 0.2*(0.9*0.5+0.1)
    assert s.rate(8, 50) == pytest.approx(0.2 * 0.55)
    assert s.rate(16, 50) == pytest.approx(0.2 * 0.1)


def test_iteration_size_multiplies_seen_stimuli() -> None:
    s = Schedule(learning_rate=1.0, policy="StepDecay", step_size=512, decay=0.5,
                 iteration_size=2)
    # update 2 has seen 2 x 2 x 128 = 512 stimuli: first decay
    assert rates(s, [1, 2, 4], 128) == [1.0, 0.5, 0.25]


@pytest.mark.parametrize("schedule, key", [
    (Schedule(policy="StepDecay", step_size=0), "LearningRateStepSize"),
    (Schedule(policy="PolyDecay"), "MaxIterations"),
    (Schedule(policy="CosineDecay", max_iterations=5, warm_up_duration=5), "WarmUpDuration"),
    (Schedule(iteration_size=0), "IterationSize"),
])
def test_impossible_schedules_are_named(schedule: Schedule, key: str) -> None:
    problem = schedule_problem(schedule)
    assert problem is not None and problem[0] == key


def test_valid_schedule_has_no_problem() -> None:
    assert schedule_problem(Schedule(policy="CosineDecay", max_iterations=10)) is None
