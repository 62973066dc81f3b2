"""Splitting stimuli into Learn / Validation / Test, reproducibly from the run seed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from n2q.config import Section

PARTITIONS = ("Learn", "Validation", "Test")


def read_fraction(sec: Section, key: str, default: float | None = None, note: str = "") -> float:
    """``sec[key]`` as a fraction of the stimuli, refused outside [0, 1]."""
    value = sec.float(key, default) if default is not None else sec.float(key)
    if not 0.0 <= value <= 1.0:
        raise sec.error(key, f"{value} is not a fraction in [0, 1]{note}")
    return value


def round_half_up(x: float) -> int:
    # the epsilon absorbs binary fractions such as 8000 * 0.8 = 6400.000000000001 or 0.35 * 10
    return int(math.floor(x + 0.5 + 1e-9))


def rng_for(seed: int, *tags: int) -> np.random.Generator:
    """A numpy generator derived from the run seed and integer tags (what is being drawn)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(t) & 0xFFFFFFFF for t in tags]])


def ordered(ids: Sequence[int] | np.ndarray, random: bool, seed: int, tag: int) -> np.ndarray:
    """``ids`` in file order, or permuted from the seed when ``random``."""
    ids = np.asarray(ids, dtype=np.int64)
    if random:
        ids = ids[rng_for(seed, tag).permutation(len(ids))]
    return ids


def split_fractions(ids: np.ndarray, learn: float, validation: float,
                    test: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nLearn = round_half_up(N*learn), nValidation = round_half_up(N*validation), the rest (or
    round_half_up(N*test) of it) to Test. ``ids`` is already in draw order."""
    n = len(ids)
    n_learn = min(round_half_up(n * learn), n)
    n_val = min(round_half_up(n * validation), n - n_learn)
    rest = n - n_learn - n_val
    n_test = rest if test is None else min(round_half_up(n * test), rest)
    return (ids[:n_learn], ids[n_learn:n_learn + n_val],
            ids[n_learn + n_val:n_learn + n_val + n_test])
