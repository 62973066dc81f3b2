"""Fixed-point requantization (n2q.quant.fixedpoint) against exact rational arithmetic."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
import torch

from n2q.quant.fixedpoint import (
    quantize_multiplier,
    quantize_multipliers,
    requantize,
    rounding_shift,
)


def _round_half_away(q: Fraction) -> int:
    n = math.floor(abs(q) + Fraction(1, 2))
    return n if q >= 0 else -n


def test_rounding_shift_ties_away_from_zero():
    p = torch.tensor([3, -3, 5, -5, 4, 7, -7, 1, -1, 0])
    assert rounding_shift(p, torch.tensor(1)).tolist() == [2, -2, 3, -3, 2, 4, -4, 1, -1, 0]
    assert rounding_shift(p, torch.tensor(0)).tolist() == p.tolist()
    # 7/4 = 1.75 -> 2 ; 6/4 = 1.5 -> 2 ; 5/4 -> 1 ; -6/4 -> -2
    assert rounding_shift(torch.tensor([7, 6, 5, -6]), torch.tensor(2)).tolist() == [2, 2, 1, -2]


def test_multiplier_by_hand():
    assert quantize_multiplier(0.5) == (1 << 30, 31)        # 2^30 * 2^-31
    assert quantize_multiplier(0.75) == (3 << 29, 31)
    assert quantize_multiplier(1.0) == (1 << 30, 30)
    assert quantize_multiplier(-0.25) == (-(1 << 30), 32)
    assert quantize_multiplier(0.0) == (0, 0)
    with pytest.raises(ValueError):
        quantize_multiplier(2.0 ** 31)


def test_random_multipliers_and_accumulators_against_fractions():
    """20000 random cases: log-uniform |M| in [1e-9, 100), int32 accumulators with |acc * M|
    up to 2^16 (an output the int32 pipeline can hold). The integer pipeline equals the exact
    rational round(acc * M0 / 2^n) always, and is within 0.5 + |acc * M| * 2^-31 of the exact
    acc * M; the worst errors are printed."""
    rng = random.Random(12)
    worst, worst_rel_m, differ, n_cases = 0.0, 0.0, 0, 0
    for _ in range(200):
        m = 10 ** rng.uniform(-9, 2) * rng.choice((1, -1))
        m0, n = quantize_multiplier(m)
        exact_m = Fraction(m)
        worst_rel_m = max(worst_rel_m, float(abs(Fraction(m0, 2 ** n) - exact_m) / abs(exact_m)))
        bound_acc = min(2 ** 31 - 1, int(2 ** 16 / abs(m)))
        accs = [rng.randint(-bound_acc, bound_acc) for _ in range(100)]
        got = requantize(torch.tensor(accs), torch.tensor(m0), torch.tensor(n), 0,
                         -(2 ** 62), 2 ** 62).tolist()
        for acc, y in zip(accs, got, strict=True):
            assert y == _round_half_away(acc * Fraction(m0, 2 ** n))
            error = float(abs(y - acc * exact_m))
            assert error <= 0.5 + abs(acc * m) * 2.0 ** -31 + 1e-12, (m, acc, y)
            worst = max(worst, error)
            differ += abs(y - _round_half_away(acc * exact_m))
            n_cases += 1
    assert worst_rel_m <= 2.0 ** -31
    assert worst < 0.5 + 2.0 ** -15
    print(f"fixed point: worst |M0*2^-n - M|/M = {worst_rel_m:.3g} (bound 2^-31 = "
          f"{2.0 ** -31:.3g}); worst |y - acc*M| = {worst:.6f} levels; {differ} of {n_cases} "
          "results differ from the exact round(acc*M) (by one level at a tie)")


def test_per_channel_zero_points_and_clamp():
    acc = torch.tensor([[[100], [100]], [[-100], [1000]]])          # [B=2, C=2, 1]
    m0, n = quantize_multipliers(torch.tensor([0.5, 0.25]))
    y = requantize(acc, m0, n, torch.tensor([10, 0]), 0, 255)
    # ch0: 10 + 50 = 60, 10 - 50 -> 0 (clamp); ch1: 0 + 25 = 25, 250
    assert y.tolist() == [[[60], [25]], [[0], [250]]]
    y = requantize(acc, m0, n, torch.tensor([10, 0]), 0, 200)
    assert y[1, 1, 0].item() == 200
