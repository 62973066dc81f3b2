"""Data-parallel learning on torch.distributed (launched by torchrun, or by ``-multidev``).

One process per device ("rank"); every rank builds the same network, DistributedDataParallel
(DDP) all-reduces the gradients. What n2q adds on top, and why:

- Sharding: every rank computes the same seeded order of an epoch; global batch k is the
  stimuli ``order[k*W*B:(k+1)*W*B]`` and rank r takes its r-th slice of B, so W ranks with
  BatchSize B see exactly the stimuli of one process with BatchSize W*B. The tail of an epoch
  is split evenly (every rank needs the same number of batches: DDP steps are collective); a
  tail shorter than W is dropped for learning. Each rank's mean loss is weighted by
  n_rank * W / n_global so that DDP's gradient average is the mean over the global batch.
- One writer: rank 0 prints, plots and writes folders; the other ranks' stdout/stderr go to
  /dev/null (their errors still reach the terminal) and their target reports are inert.
- Quantizer state: whatever a forward pass changes outside autograd (LSQ's first-batch step
  sizes, tracked ranges) is reconciled by ``sync_quantizers``: a quantizer with a
  ``sync(process_group)`` method does its own reduction (SimQAT: min/max of ranges); the
  default averages floating-point tensors and broadcasts the others from rank 0.
- BatchNorm: per rank (batch statistics of the rank's shard; running statistics averaged
  across ranks at each log point, so that validation and the saved files see one model) or
  synchronized (``-sync-bn``: batch statistics over the global batch, exact on gloo and NCCL).
- IterationSize: the batches that only accumulate gradients run under DDP's ``no_sync``.

This module: process group, sharding, reductions of results; n2q.train.ddp: the model side.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from n2q.errors import UserError, notice

PEER_FAILED_EXIT = 3  # a rank stopped because another one failed (the launcher knows it)
LAUNCHED_ENV = "N2Q_MULTIDEV"  # set by the -multidev launcher in each rank's environment


@dataclass
class DistState:
    """Where this process stands: rank ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    sync_bn: bool = False
    compile: bool = False        # -compile: torch.compile of the learning step
    channels_last: bool = False  # set by n2q.train.ddp.wrap (CUDA conv nets)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def label(self) -> str:
        return f"rank {self.rank} of {self.world}" if self.active else ""


_STATE = DistState()


def current() -> DistState:
    """The process's distributed state (rank 0 of 1 outside a distributed run)."""
    return _STATE


# ------------------------------------------------------------------------------------------------
# process group
# ------------------------------------------------------------------------------------------------
def env_world() -> int:
    """Processes of this run, from torchrun's (or the -multidev launcher's) WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank_device(options: Any) -> torch.device:
    """The device of this rank: ``-multidev`` id of this rank, else torchrun's LOCAL_RANK GPU
    (``-dev cpu`` or no CUDA: the CPU)."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.cuda.is_available() or getattr(options, "dev", "") == "cpu":
        return torch.device("cpu")
    ids = [int(i) for i in os.environ.get("N2Q_MULTIDEV_DEVICES", "").split(",") if i]
    index = ids[local] if ids else local
    if index >= torch.cuda.device_count():
        raise UserError(f"rank {local}: GPU {index} does not exist (there are "
                        f"{torch.cuda.device_count()})")
    torch.backends.cudnn.benchmark = True
    return torch.device("cuda", index)


def setup(options: Any) -> DistState:
    """Join the process group described by the environment (nothing when WORLD_SIZE <= 1)."""
    world = env_world()
    _STATE.compile = bool(getattr(options, "compile", False))
    if world <= 1:
        if getattr(options, "sync_bn", False):
            notice("-sync-bn acts only when several processes learn (torchrun, -multidev)")
        return _STATE
    if os.environ.get(LAUNCHED_ENV) is None and getattr(options, "multidev", None):
        raise UserError("-multidev starts its own processes: run it without torchrun, or drop "
                        "-multidev under torchrun (one process per device)")
    if getattr(options, "find_lr", 0):
        raise UserError("-find-lr runs in one process: drop torchrun / -multidev")
    device = rank_device(options)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = timedelta(seconds=float(getattr(options, "dist_timeout", 1800)))
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
        _STATE.rank, _STATE.world = dist.get_rank(), dist.get_world_size()
        _STATE.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        _STATE.device = device
        _STATE.sync_bn = bool(getattr(options, "sync_bn", False))
        barrier()
    except (RuntimeError, ValueError) as error:
        teardown()
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"rank {os.environ.get('RANK', '?')} of {world}: could not join the "
                        f"other processes ({first[:200]}); check MASTER_ADDR / MASTER_PORT, "
                        f"or raise -dist-timeout") from None
    return _STATE


def barrier() -> None:
    """Wait for every rank; gloo's monitored barrier names a rank that never came."""
    if not _STATE.active:
        return
    if dist.get_backend() == "gloo":
        dist.monitored_barrier(timeout=_timeout(), wait_all_ranks=True)
    else:
        dist.barrier()


def _timeout() -> timedelta:
    from torch.distributed.distributed_c10d import _get_default_timeout

    return _get_default_timeout(dist.get_backend())


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _STATE.rank, _STATE.world, _STATE.device = 0, 1, None
    _STATE.channels_last = False


def is_peer_failure(error: BaseException) -> bool:
    """An error raised here because ANOTHER rank died or hung (closed connection, timeout)."""
    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "Connection reset", "gloo", "NCCL",
                            "Timed out", "monitoredBarrier", "Broken pipe"))


@contextlib.contextmanager
def session(options: Any) -> Iterator[DistState]:
    """The distributed part of a run: join the group, silence ranks > 0, leave cleanly.

    A UserError of rank r is re-raised as ``rank r of W: <message>``; an error caused by a peer
    that failed exits with PEER_FAILED_EXIT and one line (none under the -multidev launcher,
    which reports the rank that failed)."""
    state = setup(options)
    saved = sys.stdout, sys.stderr
    if state.active and not state.is_main:
        sink = open(os.devnull, "w")  # noqa: SIM115 (closed below)
        sys.stdout = sys.stderr = sink
    try:
        yield state
        barrier()
    except UserError as error:
        if not state.active:
            raise
        raise UserError(f"{state.label()}: {error}") from error
    except Exception as error:
        if not (state.active and is_peer_failure(error)):
            raise
        sys.stdout, sys.stderr = saved
        if os.environ.get(LAUNCHED_ENV) is None:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            print(f"Error: {state.label()}: stopped, another process of the run failed or "
                  f"hung ({first[:200]})", file=sys.stderr)
        raise SystemExit(PEER_FAILED_EXIT) from None
    finally:
        if sys.stdout is not saved[0]:
            sys.stdout.close()
        sys.stdout, sys.stderr = saved
        teardown()


# ------------------------------------------------------------------------------------------------
# sharding (the provider's ``loader(..., shard=...)`` hook)
# ------------------------------------------------------------------------------------------------
Shard = Callable[[np.ndarray, int], list[np.ndarray]]


def learn_shard(rank: int, world: int) -> Shard:
    """This rank's batches of a learn order: the same number on every rank (see module doc)."""
    def batches(order: np.ndarray, bs: int) -> list[np.ndarray]:
        step = bs * world
        full = len(order) // step
        out = [order[k * step + rank * bs:k * step + (rank + 1) * bs] for k in range(full)]
        tail = order[full * step:]
        if len(tail) >= world:
            out.append(np.array_split(tail, world)[rank])
        return out
    return batches


def eval_shard(rank: int, world: int) -> Shard:
    """This rank's batches of an evaluation order: every stimulus scored by exactly one rank."""
    learn = learn_shard(rank, world)

    def batches(order: np.ndarray, bs: int) -> list[np.ndarray]:
        full = len(order) // (bs * world) * bs * world
        out = learn(order[:full], bs)
        tail = np.array_split(order[full:], world)[rank]
        return out + [tail[i:i + bs] for i in range(0, len(tail), bs)]
    return batches


def shard(kind: str = "learn") -> Shard | None:
    """The shard of this rank (None in a single process: the provider's own batches)."""
    if not _STATE.active:
        return None
    return (learn_shard if kind == "learn" else eval_shard)(_STATE.rank, _STATE.world)


def global_batch_size(k: int, total: int, bs: int) -> int:
    """Stimuli of global batch k of an order of ``total`` stimuli (all ranks together)."""
    world = _STATE.world
    step = bs * world
    if (k + 1) * step <= total:
        return step
    tail = total - k * step
    return tail if tail >= world else 0


def batch_stimuli(k: int, total: int, n_local: int, bs: int) -> int:
    """Stimuli of learn batch k over all ranks (``n_local`` in a single process)."""
    return global_batch_size(k, total, bs) if _STATE.active else n_local


def loss_weight(n_local: int, n_global: int) -> float:
    """Factor of this rank's MEAN loss so that DDP's average is the global batch mean."""
    if not _STATE.active or not n_global:
        return 1.0
    return n_local * _STATE.world / n_global


# ------------------------------------------------------------------------------------------------
# results of sharded passes
# ------------------------------------------------------------------------------------------------
def sum_counts(counts: np.ndarray | torch.Tensor) -> Any:
    """Element-wise sum over ranks (confusion matrices, correct counts); same type back."""
    if not _STATE.active:
        return counts
    # NCCL reduces CUDA tensors only (the rank's device); gloo CPU ones
    device = _STATE.device if _STATE.device is not None else torch.device("cpu")
    t = torch.as_tensor(counts).to(device, torch.float64, copy=True)
    dist.all_reduce(t)
    out = t.round().to(torch.as_tensor(counts).dtype)
    return out.cpu().numpy() if isinstance(counts, np.ndarray) else out.to(counts.device)


def gather_rows(rows: list[Any]) -> list[Any]:
    """Every rank's list, concatenated in rank order (rank 0 gets all; picklable rows)."""
    if not _STATE.active:
        return rows
    everyone: list[Any] = [None] * _STATE.world
    dist.all_gather_object(everyone, rows)
    return [row for part in everyone for row in part]


def reduce_scores(results: dict[str, Any], sp: Any, partition: str) -> None:
    """A sharded evaluation's TargetScores made whole on every rank: confusion matrices and
    top-N counts summed, per-batch successes and misclassified rows gathered (misclassified
    back in partition order)."""
    if not _STATE.active:
        return
    position = {int(i): k for k, i in enumerate(sp.partition_ids(partition))}
    for score in results.values():
        score.cm.counts = sum_counts(score.cm.counts)
        score.top_n_correct = int(sum_counts(np.array([score.top_n_correct]))[0])
        score.success.batches = gather_rows(score.success.batches)
        rows = gather_rows(score.misclassified)
        score.misclassified = sorted(rows, key=lambda row: position.get(row[0], 0))


class InertReport:
    """The target report of a rank > 0: accepts every call, writes nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def silence_reports(targets: list[Any]) -> None:
    """Ranks > 0 write no target files (rank 0 writes the reduced results)."""
    if _STATE.active and not _STATE.is_main:
        for t in targets:
            t.report = InertReport()


def reseed_rank(seed: int, epoch: int) -> None:
    """Ranks > 0 draw their own dropout masks (rank 0 keeps the single-process RNG stream)."""
    if _STATE.rank > 0:
        torch.manual_seed(hash((seed, _STATE.rank, epoch)) & 0x7FFFFFFFFFFF)
