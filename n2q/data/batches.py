"""Batches of a stimuli provider (provider.py): the datasets a DataLoader runs in worker
processes (a batch fully processed per item) and the StimuliData statistics pass.

A UserError met in a worker travels back as a value (:class:`Failure`) and is raised in the
main process, so a bad stimulus is one located line, not a DataLoader crash.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from n2q.data.pipeline import Pipeline
from n2q.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from n2q.data.provider import StimuliProvider

class Batches:
    """An iterable of batches that knows how many it yields (for progress bars); each
    iteration goes through the same batches again."""

    def __init__(self, make_iterator: Callable[[], Iterator[tuple]], length: int) -> None:
        self._make_iterator = make_iterator
        self._length = length

    def __iter__(self) -> Iterator[tuple]:
        return self._make_iterator()

    def __len__(self) -> int:
        return self._length


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


class Failure:
    """A UserError met in a worker, carried back as a value (not a DataLoader crash)."""

    def __init__(self, error: UserError) -> None:
        self.error = error


class BatchDataset(torch.utils.data.Dataset):
    """Item b = batch b, fully processed (decode, chain, finalize, size check, collate)."""

    def __init__(self, provider: StimuliProvider, partition: str, batches: list[np.ndarray],
                 epoch: int, with_ids: bool) -> None:
        self.provider = provider
        self.partition = partition
        self.batches = batches
        self.epoch = epoch
        self.with_ids = with_ids
        self.ids = provider.partition_ids(partition)
        db = provider.database
        self.pre = provider._precompute(partition) if db.batch() is not None else None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int):
        try:
            return self._batch(self.batches[b])
        except UserError as exc:
            return Failure(exc)

    def _batch(self, positions: np.ndarray) -> tuple:
        p = self.provider
        pipe = p.pipeline(self.partition)
        xs = []
        for pos in positions:
            stimulus = int(self.ids[pos])
            if self.pre is not None:
                x = pipe.random_part(self.pre[pos], stimulus, self.epoch)
                p._check_size(x, self.partition, stimulus, self.epoch)
                xs.append(p.finalize(x))
            else:
                xs.append(p.stimulus(self.partition, stimulus, self.epoch))
        stim = torch.from_numpy(self.ids[positions])
        y = torch.from_numpy(p.database.targets[self.ids[positions]])
        # default_collate stacks straight into shared memory in a worker process (a plain
        # stack would be copied there once more to reach the main process)
        x = torch.utils.data.default_collate(xs) if xs else torch.zeros(0, *p.size)
        return (x, y, stim) if self.with_ids else (x, y)


class StatsDataset(torch.utils.data.Dataset):
    """Item = partial statistics of a chunk of stimuli (raw values after the chain)."""

    def __init__(self, database, pipe: Pipeline, ids: np.ndarray, chunk: int = 64) -> None:
        self.database = database
        self.pipe = pipe
        self.chunks = [ids[i:i + chunk] for i in range(0, len(ids), chunk)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int):
        try:
            acc = Stats()
            for stimulus in self.chunks[i]:
                x = self.pipe.deterministic(self.database, int(stimulus))
                acc.add(self.pipe.random_part(x, int(stimulus), 0))
            return acc
        except UserError as exc:
            return Failure(exc)


def run_loader(dataset, workers: int, pin: bool) -> Iterator:
    if len(dataset) == 0:
        return
    if workers <= 0 or len(dataset) == 1:
        items = (dataset[i] for i in range(len(dataset)))
    else:
        items = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False,
                                            num_workers=min(workers, len(dataset)),
                                            pin_memory=pin, collate_fn=_identity,
                                            worker_init_fn=_worker_init)
    for item in items:
        if isinstance(item, Failure):
            raise item.error
        yield item


def _identity(item):
    return item


def _worker_init(worker_id: int) -> None:
    """Keep freed image-sized buffers in the heap: by default glibc returns every block above
    its mmap threshold to the system, so each decoded image and temporary costs fresh page
    faults (measured: about a third of the per-stimulus time of an ImageNet-style chain)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


class Stats:
    """Running count / sum / sum of squares / min / max in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.squares = 0.0
        self.low = float("inf")
        self.high = float("-inf")

    def add(self, x: torch.Tensor) -> None:
        if x.numel() == 0:
            return
        v = x.to(torch.float64)
        self.count += v.numel()
        self.total += float(v.sum())
        self.squares += float((v * v).sum())
        self.low = min(self.low, float(v.min()))
        self.high = max(self.high, float(v.max()))

    def merge(self, other: Stats) -> None:
        self.count += other.count
        self.total += other.total
        self.squares += other.squares
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def result(self) -> dict[str, float]:
        mean = self.total / self.count
        var = max(self.squares / self.count - mean * mean, 0.0)
        return {"mean": mean, "stdDev": var ** 0.5, "minVal": self.low, "maxVal": self.high}
