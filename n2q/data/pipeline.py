"""The transformation chain of one partition, and what runs it per stimulus or per batch.

A :class:`Step` is one ``[sp.*Transformation*]`` section with its ApplyTo set. For a partition
the provider keeps the steps that apply to it, in the spec's order (cacheable ones in file
order, then on-the-fly ones, then channel ones), and splits them into

- ``prefix``: the leading deterministic steps, computed once (in memory for a data base that
  is a single uint8 tensor, else per stimulus, on disk when CachePath is set: only the leading
  deterministic *cacheable* steps are cached there);
- ``tail``: the rest, recomputed for every stimulus with a generator seeded from (run seed,
  epoch, stimulus id), so the draw does not depend on worker count or batch order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from n2q.errors import UserError

APPLY_TO = {
    "All": frozenset({"Learn", "Validation", "Test"}),
    "LearnOnly": frozenset({"Learn"}),
    "ValidationOnly": frozenset({"Validation"}),
    "TestOnly": frozenset({"Test"}),
    "NoLearn": frozenset({"Validation", "Test"}),
    "NoValidation": frozenset({"Learn", "Test"}),
    "NoTest": frozenset({"Learn", "Validation"}),
}
PARTITION_CODE = {"Learn": 1, "Validation": 2, "Test": 3}


@dataclass
class Step:
    transformation: object  # a Transformation, or a ChannelGroup
    apply_to: frozenset
    cacheable: bool
    section: object

    @property
    def random(self) -> bool:
        return bool(getattr(self.transformation, "random", False))


class ChannelGroup:
    """``[sp.ChannelTransformation*]`` sections: output channel c is channel c of its chain's
    result (the only channel when the chain outputs one, e.g. ChannelExtraction); channels
    without a chain pass through."""

    def __init__(self, chains: dict[int, list]) -> None:
        self.chains = chains
        self.random = any(t.random for chain in chains.values() for t in chain)
        self.section = next(iter(chains.values()))[0].section

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        n_out = max(x.shape[-3], max(self.chains) + 1)
        channels = []
        for c in range(n_out):
            chain = self.chains.get(c)
            if chain is None:
                if c >= x.shape[-3]:
                    raise chain_error(self.section, f"no ChannelTransformation makes channel {c} "
                                      f"and the stimulus has only {x.shape[-3]} channels")
                channels.append(x[..., c:c + 1, :, :])
                continue
            y = x
            for t in chain:
                y = t(y, rng)
            k = c if y.shape[-3] > 1 else 0
            channels.append(y[..., k:k + 1, :, :])
        if len({ch.dtype for ch in channels}) > 1:
            channels = [ch.float() for ch in channels]
        sizes = {tuple(ch.shape[-2:]) for ch in channels}
        if len(sizes) > 1:
            raise chain_error(self.section, f"channel transformations give channels of different "
                              f"sizes {sorted(sizes)}")
        return torch.cat(channels, dim=-3)

    def __repr__(self) -> str:
        return f"ChannelGroup{self.chains}"


def chain_error(section, message: str) -> UserError:
    return section.error(None, message)


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): cheap, stable across processes."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = h * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


def section_signature(sec) -> str:
    """A section's keys with their resolved values, sorted: ``"K1=v1;K2=v2"``."""
    return ";".join(f"{k}={sec.str(k)}" for k in sorted(sec.keys()))


def step_signature(steps: list[Step]) -> str:
    """What identifies a chain's output (for the disk cache): sections and resolved keys."""
    return "|".join(f"{step.section.name};{section_signature(step.section)}" for step in steps)


class Pipeline:
    """The chain of one partition: prefix (deterministic) and tail (random, per stimulus)."""

    def __init__(self, steps: list[Step], seed: int, cache_dir: Path | None,
                 database_signature: str) -> None:
        self.steps = steps
        self.seed = seed
        n_det = 0
        while n_det < len(steps) and not steps[n_det].random:
            n_det += 1
        self.prefix = steps[:n_det]
        self.tail = steps[n_det:]
        n_cache = 0
        while n_cache < n_det and steps[n_cache].cacheable:
            n_cache += 1
        self.cached = steps[:n_cache]  # on disk when CachePath is set
        self.after_cache = steps[n_cache:n_det]
        self.cache_dir = None
        if cache_dir is not None and self.cached:
            digest = hashlib.sha1((database_signature + "#" + step_signature(self.cached))
                                  .encode()).hexdigest()[:16]
            self.cache_dir = cache_dir / digest

    # -- per stimulus --------------------------------------------------------------------------
    def deterministic(self, database, stimulus: int) -> torch.Tensor:
        """The prefix output of one stimulus (from the disk cache when there is one)."""
        x = None
        path = self.cache_dir / f"{stimulus}.npy" if self.cache_dir is not None else None
        if path is not None and _fresh(path, database, stimulus):
            try:
                x = torch.from_numpy(np.load(path))
            except (OSError, ValueError):
                x = None  # a damaged entry is recomputed
        if x is None:
            x = run_steps(database.load(stimulus), self.cached, None)
            if path is not None:
                _atomic_save(path, x)
        return run_steps(x, self.after_cache, None)

    def random_part(self, x: torch.Tensor, stimulus: int, epoch: int) -> torch.Tensor:
        if not self.tail:
            return x
        rng = torch.Generator().manual_seed(mix_seed(self.seed, epoch, stimulus))
        return run_steps(x, self.tail, rng)


def run_steps(x: torch.Tensor, steps: list[Step], rng: torch.Generator | None) -> torch.Tensor:
    for step in steps:
        x = step.transformation(x, rng)
    return x


def _fresh(path: Path, database, stimulus: int) -> bool:
    """A cache entry exists and is newer than the stimulus's image file (if it has one)."""
    try:
        cached = path.stat().st_mtime
    except OSError:
        return False
    files = getattr(database, "files", None)
    if files is None:
        return True
    try:
        return cached >= files[stimulus].stat().st_mtime
    except OSError:
        return True  # the image is gone: loading it would fail anyway; the cache still serves


def _atomic_save(path: Path, x: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, x.numpy())
    os.replace(tmp, path)


def find_culprit(x0: torch.Tensor, steps: list[Step], rng_seed: int | None) -> Step | None:
    """The step that produced the (wrong) final size: the last one that changed the size."""
    rng = torch.Generator().manual_seed(rng_seed) if rng_seed is not None else None
    culprit = None
    shape = tuple(x0.shape[-3:])
    x = x0
    for step in steps:
        x = step.transformation(x, rng)
        if tuple(x.shape[-3:]) != shape:
            culprit = step
            shape = tuple(x.shape[-3:])
    return culprit
