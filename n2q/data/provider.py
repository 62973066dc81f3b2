"""The stimuli provider ``[sp]``: data base + transformation chains -> batches of tensors.

``make_provider(cfg, seed)`` reads ``[database]``, ``[sp]`` and the ``[sp.*]`` sub-sections in
file order, publishes ``[sp]_EpochSize`` and the ``[sp.StimuliData-*]`` statistics (each one as
soon as it is met, so that transformations after it can refer to it), and hands out loaders
that yield ``(x float32 [B, C, H, W], label int64 [B])`` (plus the stimulus ids with
``with_ids=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from n2q.data.batches import (
    BatchDataset,
    Batches,
    Stats,
    StatsDataset,
    default_workers,
    run_loader,
)
from n2q.data.databases import make_database
from n2q.data.partition import PARTITIONS
from n2q.data.pipeline import (
    APPLY_TO,
    PARTITION_CODE,
    ChannelGroup,
    Pipeline,
    Step,
    find_culprit,
    mix_seed,
    run_steps,
    section_signature,
)
from n2q.data.transforms import make_transformation
from n2q.errors import UserError

if TYPE_CHECKING:
    from n2q.config import Config

SP_KEYS = ("SizeX", "SizeY", "NbChannels", "Size", "BatchSize", "CachePath", "CompositeStimuli",
           "DataSignedMapping", "QuantizationLevels", "QuantizationMin", "QuantizationMax",
           "ConfigSection")
PROVIDER_NAMES = ("sp", "env")  # N2D2's StimuliProvider and its Environment (frame models)
STATS = ("mean", "stdDev", "minVal", "maxVal")
_CHUNK = 2048  # stimuli per batched pass over an in-memory data base (bounds peak memory)
_FINAL_BYTES = 1 << 30  # largest in-memory partition kept finalized (float32)


class StimuliProvider:
    def __init__(self, cfg: Config, seed: int, name: str = "sp") -> None:
        self.cfg = cfg
        self.seed = int(seed)
        self.name = name
        sec = cfg[name]
        self.section = sec
        if name == "env":
            _refuse_spiking(sec)
        sec.check_keys(SP_KEYS, "the stimuli provider")
        self.size = self._read_size(sec)
        self.batch_size = sec.int("BatchSize", 1)
        if self.batch_size <= 0:
            raise sec.error("BatchSize", f"{self.batch_size} must be at least 1")
        if sec.bool("CompositeStimuli", False):
            raise sec.error("CompositeStimuli", "composite stimuli (pixel-wise label maps) are "
                            "not supported by n2q's data bases, which label whole stimuli: "
                            "remove it or set 0")
        self.signed = sec.bool("DataSignedMapping", False)
        self._read_quantization(sec)
        self.cache_dir = sec.path("CachePath", None)
        self.database = make_database(cfg, self.seed)
        self._publish(name, "_EpochSize", len(self.database.partitions["Learn"]))
        self.stimuli_data: dict[str, dict[str, float]] = {}
        self._cacheable: list[Step] = []
        self._on_the_fly: list[Step] = []
        self._channel: list[tuple[int, Step]] = []
        self._read_subsections()
        self._pipelines: dict[str, Pipeline] = {}
        self._precomputed: dict[str, torch.Tensor] = {}
        self._finalized: set[str] = set()  # partitions whose _precomputed is final

    # -- configuration -------------------------------------------------------------------------
    @staticmethod
    def _read_size(sec) -> tuple[int, int, int]:
        if "Size" in sec:
            if "SizeX" in sec or "SizeY" in sec:
                raise sec.error("Size", "give either Size=W H [C] or SizeX/SizeY, not both")
            dims = sec.ints("Size")
            if len(dims) not in (2, 3):
                raise sec.error("Size", f"{len(dims)} values: write Size=width height "
                                "[channels]")
            w, h, c = (*dims, sec.int("NbChannels", 1))[:3]
        else:
            w, h, c = sec.int("SizeX"), sec.int("SizeY"), sec.int("NbChannels", 1)
        for key, v in (("SizeX", w), ("SizeY", h), ("NbChannels", c)):
            if v <= 0:
                raise sec.error(key if key in sec else "Size", f"{v} must be positive")
        return c, h, w

    def _read_quantization(self, sec) -> None:
        self.q_levels = sec.int("QuantizationLevels", 0)
        self.q_min = sec.float("QuantizationMin", 0.0)
        self.q_max = sec.float("QuantizationMax", 1.0)
        if self.q_levels < 0 or self.q_levels == 1:
            raise sec.error("QuantizationLevels", f"{self.q_levels}: use 0 (off) or >= 2")
        if self.q_levels and self.q_max <= self.q_min:
            raise sec.error("QuantizationMax", f"{self.q_max} must exceed QuantizationMin "
                            f"{self.q_min}")

    def _read_subsections(self) -> None:
        """[sp.*] in file order; StimuliData statistics are published when met."""
        prefix = self.name + "."
        for sub in self.cfg.sections:
            if not sub.name.startswith(prefix):
                continue
            kind = sub.name[len(prefix):]
            if kind.startswith("StimuliData"):
                self._stimuli_data(sub)
            elif kind.startswith(("ChannelTransformation", "ChannelOnTheFlyTransformation")):
                t = make_transformation(sub, ("Channel",))
                channel = sub.int("Channel")
                if channel < 0:
                    raise sub.error("Channel", f"{channel} is not a channel index (0, 1, ...)")
                self._channel.append((channel, Step(t, self._apply_to(sub), False, sub)))
            elif kind.startswith("OnTheFlyTransformation"):
                t = make_transformation(sub)
                self._on_the_fly.append(Step(t, self._apply_to(sub), False, sub))
            elif kind.startswith("Transformation"):
                t = make_transformation(sub)
                self._cacheable.append(Step(t, self._apply_to(sub), True, sub))

    @staticmethod
    def _apply_to(sec) -> frozenset:
        return APPLY_TO[sec.enum("ApplyTo", list(APPLY_TO), "All")]

    def steps_for(self, partition: str) -> list[Step]:
        """The spec's order: cacheable (file order), on-the-fly (file order), channel ones."""
        steps = [s for s in self._cacheable + self._on_the_fly if partition in s.apply_to]
        chains: dict[int, list] = {}
        for channel, step in self._channel:
            if partition in step.apply_to:
                chains.setdefault(channel, []).append(step.transformation)
        if chains:
            group = ChannelGroup(chains)
            steps.append(Step(group, APPLY_TO["All"], False, group.section))
        return steps

    def float_stimuli(self, partition: str = "Test") -> str | None:
        """Why the stimuli of ``partition`` are not 8-bit images mapped to [0, 1], or None when
        they are. Integer fusion feeds its first layer round(255 x): exact for such stimuli
        only (a Normalize or RangeAffine output has a fractional zero point and scale)."""
        if self.signed:
            return f"[{self.name}] DataSignedMapping=1 maps the images to [-1, 1]"
        if self.q_levels:
            return f"[{self.name}] QuantizationLevels={self.q_levels} re-quantizes the stimuli"
        for step in self.steps_for(partition):
            group = getattr(step.transformation, "chains", None)   # a ChannelGroup
            inner = [t for chain in group.values() for t in chain] if group else [
                step.transformation]
            for t in inner:
                if getattr(t, "FLOAT_OUTPUT", False):
                    return f"[{t.section.name}] {t.TYPE} gives float stimuli"
        return None

    # -- public API ----------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return self.database.labels

    @property
    def nb_classes(self) -> int:
        return len(self.database.labels)

    def partition_sizes(self) -> dict[str, int]:
        return self.database.partition_sizes()

    def stimulus_name(self, stimulus: int) -> str:
        """The name of a stimulus id (a path, or ``file[index].pgm`` for IDX data)."""
        return self.database.name(int(stimulus))

    def partition_ids(self, partition: str) -> np.ndarray:
        """Stimulus ids of a partition, in partition order (int64 [n])."""
        _check_partition(partition)
        return self.database.partitions[partition]

    def loader(self, partition: str, *, shuffle: bool, epoch: int = 0,
               num_workers: int | None = None, drop_last: bool = False,
               limit: int | None = None, with_ids: bool = False,
               indices: Sequence[int] | None = None,
               shard: Callable[[np.ndarray, int], list[np.ndarray]] | None = None) -> Batches:
        """Batches of one partition: ``(x, label)`` or ``(x, label, ids)`` with ``with_ids``.

        ``shuffle`` draws the order from (seed, epoch, partition); ``limit`` keeps the first
        stimuli of that order; ``indices`` (positions in the partition, repeats allowed: e.g.
        a draw with replacement for ``-learn N``) replaces the order.
        ``ids`` are data base stimulus ids, for ``stimulus_name``.
        ``shard`` (data-parallel learning, n2q.train.distributed): (order, batch size) -> this
        process's batches of positions, instead of the whole order cut in batches."""
        order = self._order(partition, shuffle, epoch, indices)
        if limit is not None:
            order = order[:max(0, int(limit))]
        bs = self.batch_size
        n_batches = len(order) // bs if drop_last else -(-len(order) // bs)
        batches = ([order[i * bs:(i + 1) * bs] for i in range(n_batches)] if shard is None
                   else shard(order, bs))  # n2q.train.distributed: this rank's share
        pipe = self.pipeline(partition)
        pin = torch.cuda.is_available()
        pre = self._precompute(partition) if self.database.batch() is not None else None
        if pre is not None and not pipe.tail:
            return Batches(lambda: self._fast_batches(partition, pre, batches, with_ids, pin),
                           len(batches))
        workers = default_workers() if num_workers is None else num_workers
        dataset = BatchDataset(self, partition, batches, epoch, with_ids)
        return Batches(lambda: run_loader(dataset, workers, pin), len(batches))

    def _order(self, partition: str, shuffle: bool, epoch: int,
               indices: Sequence[int] | None) -> np.ndarray:
        """Positions in the partition, in the order the batches take them."""
        n = len(self.partition_ids(partition))
        if indices is not None:
            order = np.asarray(indices, dtype=np.int64)
            if order.size and (order.min() < 0 or order.max() >= n):
                raise UserError(f"stimulus index out of range: the {partition} partition has "
                                f"{n} stimuli")
            return order
        if shuffle:
            g = torch.Generator().manual_seed(
                mix_seed(self.seed, epoch, PARTITION_CODE[partition], 0x5EED))
            return torch.randperm(n, generator=g).numpy()
        return np.arange(n, dtype=np.int64)

    # -- pipelines -----------------------------------------------------------------------------
    def pipeline(self, partition: str) -> Pipeline:
        _check_partition(partition)
        if partition not in self._pipelines:
            self._pipelines[partition] = Pipeline(self.steps_for(partition), self.seed,
                                                  self.cache_dir, self._database_signature())
        return self._pipelines[partition]

    def _database_signature(self) -> str:
        db = self.database
        return f"{db.TYPE};{len(db)};{section_signature(db.section)}"

    def _precompute(self, partition: str) -> torch.Tensor:
        """The deterministic prefix over a whole in-memory partition, once (batched ops).

        When nothing random follows, the result is also finalized once (float32, up to
        _FINAL_BYTES): a batch is then a single gather, with no per-batch arithmetic."""
        if partition not in self._precomputed:
            pipe = self.pipeline(partition)
            ids = torch.from_numpy(self.partition_ids(partition))
            pre = _batched(self.database.batch(), ids, pipe.prefix)
            if not pipe.tail:
                if len(ids):
                    self._check_size(pre[0], partition, int(ids[0]), 0)
                if pre.numel() * 4 <= _FINAL_BYTES:
                    # chunk by chunk into one buffer: no float32 copy of the whole partition
                    # beside it (as torch.cat of the chunks would make)
                    final = torch.empty(pre.shape, dtype=torch.float32)
                    for i in range(0, len(pre), _CHUNK):
                        final[i:i + _CHUNK] = self.finalize(pre[i:i + _CHUNK])
                    pre = final
                    self._finalized.add(partition)
            self._precomputed[partition] = pre
        return self._precomputed[partition]

    def _fast_batches(self, partition: str, pre: torch.Tensor, batches: list[np.ndarray],
                      with_ids: bool, pin: bool) -> Iterator[tuple]:
        ids = self.partition_ids(partition)
        targets = torch.from_numpy(self.database.targets)
        for positions in batches:
            pos = torch.from_numpy(positions)
            x = pre[pos] if partition in self._finalized else self.finalize(pre[pos])
            stim = torch.from_numpy(ids[positions])
            y = targets[stim]
            if pin:
                x = x.pin_memory()
            yield (x, y, stim) if with_ids else (x, y)

    def stimulus(self, partition: str, stimulus: int, epoch: int) -> torch.Tensor:
        """One stimulus through the whole chain of ``partition``, finalized (float [C,H,W])."""
        pipe = self.pipeline(partition)
        x = pipe.random_part(pipe.deterministic(self.database, stimulus), stimulus, epoch)
        self._check_size(x, partition, stimulus, epoch)
        return self.finalize(x)

    def finalize(self, x: torch.Tensor) -> torch.Tensor:
        """Integer data -> [0,1] (or [-1,1] with DataSignedMapping); then QuantizationLevels."""
        if x.is_floating_point():
            x = x.to(torch.float32)
        else:
            # 8-bit images; other integer data (none of n2q's data bases yields it): 16-bit
            full_scale = 255.0 if x.dtype == torch.uint8 else 65535.0
            x = x.to(torch.float32) / full_scale
            if self.signed:
                x = x * 2.0 - 1.0
        if self.q_levels:
            span = self.q_max - self.q_min
            steps = self.q_levels - 1
            x = ((x.clamp(self.q_min, self.q_max) - self.q_min) * (steps / span)).round()
            x = x * (span / steps) + self.q_min
        return x

    def _check_size(self, x: torch.Tensor, partition: str, stimulus: int, epoch: int) -> None:
        got = tuple(x.shape[-3:])
        if got == self.size:
            return
        steps = self.pipeline(partition).steps
        culprit = find_culprit(self.database.load(stimulus), steps,
                               mix_seed(self.seed, epoch, stimulus))
        c, h, w = got
        ec, eh, ew = self.size
        what = (f"stimuli come out of this transformation as {w}x{h}x{c} (WxHxC) but [{self.name}] "
                f"expects SizeX x SizeY x NbChannels = {ew}x{eh}x{ec}")
        if culprit is None:
            raise self.section.error(None, f"the {self.database.TYPE} stimuli are {w}x{h}x{c} "
                                     f"(WxHxC) and no transformation changes that, but "
                                     f"[{self.name}] expects {ew}x{eh}x{ec}: fix SizeX/SizeY/"
                                     "NbChannels or add a Rescale/PadCrop/ColorSpace "
                                     "transformation")
        raise culprit.section.error(None, what + f" ({partition} partition)")

    # -- [sp.StimuliData-*] --------------------------------------------------------------------
    def _stimuli_data(self, sub) -> None:
        sub.check_keys(("ApplyTo",), "a StimuliData section")
        apply_to = self._apply_to(sub)
        acc = Stats()
        for partition in PARTITIONS:
            if partition not in apply_to:
                continue
            steps = [s for s in self._cacheable if partition in s.apply_to]
            pipe = Pipeline(steps, self.seed, None, "")
            ids = self.partition_ids(partition)
            if self.database.batch() is not None and not pipe.tail:
                for start in range(0, len(ids), _CHUNK):
                    chunk = torch.from_numpy(ids[start:start + _CHUNK])
                    acc.add(_batched(self.database.batch(), chunk, pipe.prefix))
            else:
                dataset = StatsDataset(self.database, pipe, ids)
                parts = run_loader(dataset, default_workers(), False)
                for part in tqdm(parts, total=len(dataset), leave=False, unit="chunk",
                                 desc=f"[{sub.name}] {partition} statistics",
                                 disable=len(dataset) < 20):
                    acc.merge(part)
        if acc.count == 0:
            raise sub.error("ApplyTo", "no stimuli in the partitions it names: statistics "
                            "cannot be computed")
        stats = acc.result()
        self.stimuli_data[sub.name] = stats
        for key, value in stats.items():
            self._publish(sub.name, f"_GlobalValue.{key}", value)

    def _publish(self, section: str, key: str, value: float) -> None:
        """A generated key, also under the other provider name ([sp] <-> [env]) so that
        ``[sp]_EpochSize`` works in a file whose provider is ``[env]`` and the reverse."""
        self.cfg.set_generated(section, key, value)
        head, dot, tail = section.partition(".")
        if head in PROVIDER_NAMES:
            alias = PROVIDER_NAMES[1 - PROVIDER_NAMES.index(head)]
            self.cfg.set_generated(alias + dot + tail, key, value)


def make_provider(cfg: Config, seed: int, name: str | None = None) -> StimuliProvider:
    """The provider of ``cfg``: ``[sp]``, or ``[env]`` when there is no ``[sp]`` (N2D2's
    Environment is a stimuli provider for frame models; seed 004's LeNet writes ``[env]``)."""
    return StimuliProvider(cfg, seed, provider_section(cfg) if name is None else name)


def provider_section(cfg: Config) -> str:
    """The name of the provider section: ``sp``, or ``env`` when there is no ``[sp]``."""
    return "env" if "sp" not in cfg and "env" in cfg else "sp"


def _refuse_spiking(sec) -> None:
    from n2q.net.graph import SPIKING_ENV_KEYS  # one list of N2D2's spike-coding keys

    for key in SPIKING_ENV_KEYS:
        if key in sec:
            raise sec.error(key, "spiking models are not supported by n2q (frame-based "
                            "training only): remove the spike coding keys from [env]")


def _check_partition(partition: str) -> None:
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; expected one of {PARTITIONS}")


def _batched(data: torch.Tensor, ids: torch.Tensor, steps: list[Step]) -> torch.Tensor:
    """Deterministic ``steps`` over data[ids] in chunks: [n, C', H', W']."""
    if len(ids) == 0:
        return run_steps(data[:1], steps, None)[:0]
    chunks = [run_steps(data[ids[i:i + _CHUNK]], steps, None)
              for i in range(0, len(ids), _CHUNK)]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)
