"""The learn / validate / test loop (spec/cli.md, "What a run does and writes").

``evaluate`` scores a partition; ``Learner`` runs ``-learn-epoch N`` (shuffled full passes) or
``-learn N`` (stimuli drawn with replacement), validating at the log points, saving
``weights_validation/`` + ``net_state_validation/`` on each new best (``weights/`` +
``net_state/`` without a Validation partition) and the target folders' files.

Exact resume: the full state is saved at log points only; it holds the net, the solver state
and step counters, the RNG states and the position (epoch or stimuli done), and the data order
of an epoch / a stimuli chunk is a pure function of (seed, epoch / chunk). A resumed run thus
computes exactly what the uninterrupted run computes after that log point.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2q.errors import UserError, notice
from n2q.train import ddp  # issue 14: data-parallel learning, GPU fast path
from n2q.train import distributed as dist  # issue 14
from n2q.train.metrics import (
    ConfusionMatrix,
    final_block,
    is_better,
    metrics_block,
    percent,
    top_n_correct,
)
from n2q.train.progress import Progress
from n2q.train.reports import SuccessLog
from n2q.train.targets import TargetInfo


@dataclass
class RunContext:
    """What the phases share."""

    cfg: Any
    sp: Any
    net: Any
    device: torch.device
    seed: int
    targets: list[TargetInfo]
    metric: str = "Sensitivity"
    report_every: int = 100
    workdir: Path = Path(".")
    bench: bool = False
    dtype: torch.dtype = torch.float32  # DefaultDataType: the inputs are cast to it


# ------------------------------------------------------------------------------------------------
# scoring of one partition
# ------------------------------------------------------------------------------------------------
@dataclass
class TargetScore:
    """The result of one target on one partition."""

    cm: ConfusionMatrix
    success: SuccessLog
    misclassified: list[tuple[int, str, int, int]] = field(default_factory=list)
    top_n_correct: int = 0

    def top_n_rate(self) -> float:
        total = self.cm.total()
        return self.top_n_correct / total if total else 0.0


def _stimulus_name(sp: Any, sid: int) -> str:
    namer = getattr(sp, "stimulus_name", None)
    return namer(sid) if namer is not None else str(sid)


def _misclassified_rows(sp: Any, ids: np.ndarray, labels: np.ndarray,
                        preds: np.ndarray) -> list[tuple[int, str, int, int]]:
    wrong = np.flatnonzero((labels != preds) & (labels >= 0))  # -1: not scored
    return [(int(ids[i]), _stimulus_name(sp, int(ids[i])), int(labels[i]), int(preds[i]))
            for i in wrong]


@torch.no_grad()
def evaluate(ctx: RunContext, partition: str, *, net: Any = None, limit: int | None = None,
             indices: list[int] | None = None, desc: str | None = None
             ) -> dict[str, TargetScore]:
    """Score ``partition`` (in partition order) for every target; ``net`` default: ctx.net."""
    model = ctx.net if net is None else net
    was_training = model.training
    model.eval()
    results = {t.section: TargetScore(ConfusionMatrix.empty(t.nb_classes), SuccessLog(None))
               for t in ctx.targets}
    size = ctx.sp.partition_sizes()[partition]
    total = len(indices) if indices is not None else min(size, limit) if limit else size
    progress = Progress(total, desc or partition, ctx.report_every)
    try:
        loader = ctx.sp.loader(partition, shuffle=False, limit=limit, indices=indices,
                               with_ids=True, shard=dist.shard("eval"))
        for x, labels, ids in loader:
            outs = model(ddp.to_device(x, ctx.device, ctx.dtype))
            for t in ctx.targets:
                _score_batch(ctx.sp, t, outs[t.cell], labels, ids, results[t.section])
            progress.update(len(labels) * dist.current().world)
    finally:
        progress.close()
        model.train(was_training)
    dist.reduce_scores(results, ctx.sp, partition)  # each rank scored its shard
    return results


def _score_batch(sp: Any, t: TargetInfo, out: torch.Tensor, labels: torch.Tensor,
                 ids: torch.Tensor, result: TargetScore) -> None:
    y = t.map_labels(labels).numpy()
    scored = y >= 0  # LabelsMapping may ignore labels
    scores = t.scores(out).float().cpu().numpy()[scored]
    preds = t.predict(out).cpu().numpy()
    result.misclassified += _misclassified_rows(sp, ids.numpy(), y, preds)
    preds, y = preds[scored], y[scored]
    if not len(y):
        return
    result.cm.add(y, preds)
    result.success.add(int((preds == y).sum()), len(y))
    if t.top_n > 1 and t.nb_outputs > 1:
        result.top_n_correct += top_n_correct(scores, y, t.top_n)


def write_partition_reports(t: TargetInfo, partition: str, score: TargetScore) -> None:
    """ConfusionMatrix_<p>.dat/.png/_score.dat and Misclassified_<p>.dat of one target."""
    t.report.write_confusion(partition, score.cm)
    t.report.write_misclassified(partition, score.misclassified)


def test_block(t: TargetInfo, score: TargetScore) -> str:
    """N2D2's final block (+ the top-N rate when TopN > 1)."""
    text = final_block(score.cm)
    if t.top_n > 1 and t.nb_outputs > 1:
        text += f"\n    Top-{t.top_n} recognition rate: {percent(score.top_n_rate())}%"
    return text


# ------------------------------------------------------------------------------------------------
# learning
# ------------------------------------------------------------------------------------------------
class _LearnTally:
    """Per-target learning statistics since the last log point, kept on the device until
    read (no host sync per batch)."""

    def __init__(self, targets: list[TargetInfo], device: torch.device):
        self.targets = targets
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.counts = {t.section: torch.zeros(t.nb_classes ** 2, dtype=torch.int64,
                                              device=self.device) for t in self.targets}
        self.batches: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {
            t.section: [] for t in self.targets}

    def add(self, t: TargetInfo, labels: torch.Tensor, preds: torch.Tensor,
            ids: torch.Tensor) -> None:
        k = t.nb_classes
        cells = labels * k + preds  # [B] confusion cell of each stimulus
        if t.label_map is None:
            self.counts[t.section] += torch.bincount(cells, minlength=k * k)
        else:  # -1 labels weigh 0 (a weighted count needs no host sync, unlike a mask)
            scored = (labels >= 0).to(torch.float32)
            counts = torch.bincount(cells.clamp(min=0), weights=scored, minlength=k * k)
            self.counts[t.section] += counts.round().to(torch.int64)
        self.batches[t.section].append((labels, preds, ids))

    def confusion(self, t: TargetInfo) -> ConfusionMatrix:
        k = t.nb_classes
        return ConfusionMatrix(self.counts[t.section].cpu().numpy().reshape(k, k))

    def misclassified(self, sp: Any, t: TargetInfo) -> list[tuple[int, str, int, int]]:
        rows: list[tuple[int, str, int, int]] = []
        for labels, preds, ids in self.batches[t.section]:
            rows += _misclassified_rows(sp, ids.numpy(), labels.cpu().numpy(),
                                        preds.cpu().numpy())
        return rows


SYNC_INTERVAL = 0.25  # seconds between two reads of the loss and accuracy during learning


@dataclass
class LearnPlan:
    epochs: int = 0         # -learn-epoch
    stimuli: int = 0        # -learn
    log_epoch: int = 1
    log: int = 1000


class Learner:
    """One learning phase. ``run()`` returns the folder holding the best weights."""

    def __init__(self, ctx: RunContext, optimizer: Any, plan: LearnPlan):
        self.ctx = ctx
        self.opt = optimizer
        self.plan = plan
        self.has_validation = ctx.sp.partition_sizes().get("Validation", 0) > 0
        self.tally = _LearnTally(ctx.targets, ctx.device)
        self.success = {t.section: SuccessLog() for t in ctx.targets}
        # (section, correct, size) per batch and target, still on the device
        self.unsynced: list[tuple[str, torch.Tensor, int | torch.Tensor]] = []
        self.validation: dict[str, list[tuple[int, float]]] = {t.section: [] for t in ctx.targets}
        self.epoch = 0          # epochs completed
        self.stimuli = 0        # learn stimuli seen
        self.batches = 0        # learn batches seen
        self.best: float | None = None
        self.timings: list[tuple[int, int, float, float]] = []  # (batches, stimuli, data, step)
        self.pending_lines: list[str] = []
        optimizer.on_rate_change = self.pending_lines.append
        self.model = ddp.wrap(ctx.net)  # DDP (several processes), compiled step (-compile)

    # -- state -----------------------------------------------------------------------------------
    def progress_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "stimuli": self.stimuli, "batches": self.batches,
            "best": self.best, "seed": self.ctx.seed, "metric": self.ctx.metric,
            "success": {k: torch.tensor(v.batches, dtype=torch.int64).reshape(-1, 2)
                        for k, v in self.success.items()},
            "validation": {k: torch.tensor(v, dtype=torch.float64).reshape(-1, 2)
                           for k, v in self.validation.items()},
        }

    def restore(self, progress: dict[str, Any]) -> None:
        self.epoch = int(progress["epoch"])
        self.stimuli = int(progress["stimuli"])
        self.batches = int(progress["batches"])
        self.best = progress["best"]
        for t in self.ctx.targets:
            rows = progress["success"].get(t.section)
            if rows is not None:
                self.success[t.section].batches = [(int(a), int(b)) for a, b in rows.tolist()]
            val = progress["validation"].get(t.section)
            if val is not None:
                self.validation[t.section] = [(int(a), float(b)) for a, b in val.tolist()]
                t.report.validation = list(self.validation[t.section])

    def save_state(self, folder: str) -> None:
        from n2q.io.state import save_state

        save_state(self.ctx.workdir / folder, net=self.ctx.net, optimizer=self.opt,
                   progress=self.progress_state())

    # -- the phase -------------------------------------------------------------------------------
    def run(self) -> Path | None:
        """Learn; returns the folder of the best weights (None: keep the weights in memory)."""
        self.ctx.net.train()
        for t in self.ctx.targets:
            t.report.defer_plots = True
        try:
            if self.plan.epochs:
                self._run_epochs()
            else:
                self._run_stimuli()
        finally:
            for t in self.ctx.targets:
                t.report.defer_plots = False
        for t in self.ctx.targets:
            t.report.flush_plots()
        self._write_timings()
        return self.ctx.workdir / "weights_validation" if self.has_validation else None

    def _run_epochs(self) -> None:
        n = self.plan.epochs
        if self.epoch >= n:
            notice(f"the saved state has already learned {self.epoch} epoch(s): nothing left "
                   f"to learn for -learn-epoch {n}")
            return
        for epoch in range(self.epoch, n):
            loader = self.ctx.sp.loader("Learn", shuffle=True, epoch=epoch, with_ids=True,
                                        shard=dist.shard())
            self._learn_batches(loader, self.ctx.sp.partition_sizes()["Learn"],
                                f"Epoch {epoch + 1}/{n}")
            self.epoch = epoch + 1
            if self.epoch % self.plan.log_epoch == 0 or self.epoch == n:
                self._log_point()

    def _chunk_size(self) -> int:
        """-log rounded up to whole batches: a log point falls between two batches."""
        bs = self.ctx.sp.batch_size
        return max(1, math.ceil(self.plan.log / bs)) * bs

    def _run_stimuli(self) -> None:
        n = self.plan.stimuli
        size = self.ctx.sp.partition_sizes()["Learn"]  # > 0: checked by n2q.run
        chunk = self._chunk_size()
        while self.stimuli < n:
            index = self.stimuli // chunk
            count = min(chunk, n - self.stimuli)
            # stimuli drawn with replacement, from (seed, chunk index) only: resumable
            rng = np.random.default_rng([self.ctx.seed & 0xFFFFFFFF, index, 0x1EA4])
            positions = rng.integers(0, size, size=count).tolist()
            loader = self.ctx.sp.loader("Learn", shuffle=False, indices=positions,
                                        with_ids=True, shard=dist.shard())
            self._learn_batches(loader, count, f"Learn {self.stimuli + count}/{n}")
            self._log_point()

    def _learn_batches(self, loader: Any, total: int, desc: str) -> None:
        progress = Progress(total, desc, self.ctx.report_every)
        losses: list[torch.Tensor] = []
        data_time = step_time = 0.0
        t0 = synced = time.perf_counter()
        try:
            for k, (x, labels, ids) in enumerate(loader):
                t1 = time.perf_counter()
                n = dist.batch_stimuli(k, total, len(labels), self.ctx.sp.batch_size)  # global
                loss = self._train_batch(x, labels, ids, n)
                losses.append(loss)
                self.stimuli += n
                self.batches += 1
                # reading values forces a host/device sync: at report points, at most every
                # SYNC_INTERVAL seconds (the bar cannot show more anyway)
                if progress.due(n) and time.perf_counter() - synced >= SYNC_INTERVAL:
                    self._check_losses(losses)
                    progress.update(n, loss=f"{losses[-1].item():.4f}",
                                    acc=f"{self._running_success():.4f}")
                    losses.clear()
                    synced = time.perf_counter()
                else:
                    progress.update(n)
                self._flush_lines(progress)
                t2 = time.perf_counter()
                data_time += t1 - t0
                step_time += t2 - t1
                t0 = t2
            self._check_losses(losses)
        finally:
            progress.close()
        self.timings.append((self.batches, self.stimuli, data_time, step_time))

    def _train_batch(self, x: torch.Tensor, labels: torch.Tensor,
                     ids: torch.Tensor, n_global: int) -> torch.Tensor:
        dev = self.ctx.device
        x = ddp.to_device(x, dev, self.ctx.dtype)
        y = labels.to(dev, non_blocking=True)
        with ddp.step_context(self.model, self.opt):  # no all-reduce while accumulating
            outs = self.model(x)
            classes = {t.section: t.map_labels(y) for t in self.ctx.targets}
            loss = sum(t.loss(outs[t.cell], classes[t.section]) for t in self.ctx.targets)
            (loss * dist.loss_weight(len(labels), n_global)).backward()
        self.opt.step()
        ddp.after_step(self.ctx.net, self.batches == 0)  # quantizer state equal on all ranks
        with torch.no_grad():
            for t in self.ctx.targets:
                yt = classes[t.section]
                preds = t.predict(outs[t.cell])
                self.tally.add(t, yt, preds, ids)
                # per-batch success for Success_learning.dat, read at the next report point
                if t.label_map is None:
                    self._pending_success(t, (preds == yt).sum(), len(labels))
                else:
                    scored = yt >= 0
                    self._pending_success(t, ((preds == yt) & scored).sum(), scored.sum())
        return loss.detach()

    def _pending_success(self, t: TargetInfo, correct: torch.Tensor,
                         size: int | torch.Tensor) -> None:
        self.unsynced.append((t.section, correct, size))

    def _sync_success(self) -> None:
        """Move the batch successes still on the device to the logs (one sync per report)."""
        if not self.unsynced:
            return
        values = torch.stack([c for _, c, _ in self.unsynced]).tolist()
        sizes = [int(n) for _, _, n in self.unsynced]
        for (section, _, _), correct, size in zip(self.unsynced, values, sizes, strict=True):
            if size:  # a batch whose labels this target all ignores is not logged
                self.success[section].add(int(correct), size)
        self.unsynced.clear()

    def _running_success(self) -> float:
        self._sync_success()
        log = self.success[self.ctx.targets[0].section]
        return log.running_average(len(log.batches) - 1) if log.batches else 0.0

    def _check_losses(self, losses: list[torch.Tensor]) -> None:
        if not losses:
            return
        values = torch.stack(losses).float().cpu()
        bad = torch.nonzero(~torch.isfinite(values)).flatten()
        if bad.numel():
            step = self.batches - len(losses) + int(bad[0]) + 1
            raise UserError(
                f"the loss became {values[bad[0]].item()} at learn batch {step}: learning "
                f"diverged (lower the LearningRate?); the last good weights are in "
                f"{self._last_good_folder()}/")

    def _last_good_folder(self) -> str:
        for name in ("weights_validation", "weights", "weights_init"):
            if (self.ctx.workdir / name).is_dir():
                return name
        return "weights_init"

    def _flush_lines(self, progress: Progress) -> None:
        for line in self.pending_lines:
            progress.write(line)
        self.pending_lines.clear()

    # -- log points ------------------------------------------------------------------------------
    def _log_point(self) -> None:
        from n2q.io.weights import save_weights

        self._sync_success()
        ddp.consistent(self.ctx.net)  # one model on every rank (BatchNorm, quantizers)
        for t in self.ctx.targets:  # learning success: rank 0's shard; confusion: all ranks
            t.report.write_success("learning", self.success[t.section])
            cm = self.tally.confusion(t)
            cm.counts = dist.sum_counts(cm.counts)
            t.report.write_confusion("learning", cm)
            t.report.write_misclassified(
                "learning", dist.gather_rows(self.tally.misclassified(self.ctx.sp, t)))
        self.tally.reset()
        if not self.has_validation:
            if dist.current().is_main:
                save_weights(self.ctx.net, self.ctx.workdir / "weights")
                self.save_state("net_state")
                print("    'weights' saved!")
        else:
            self._validate(save_weights)
        dist.barrier()  # the other ranks may read what rank 0 just wrote

    def _validate(self, save_weights: Any) -> None:
        results = evaluate(self.ctx, "Validation", desc="Validation")
        first = self.ctx.targets[0]
        metric = self.ctx.metric
        score = results[first.section].cm.score(metric)
        for t in self.ctx.targets:
            value = results[t.section].cm.score(metric)
            self.validation[t.section].append((self.batches, value))
            t.report.add_validation(self.batches, value, metric)
        if is_better(metric, score, self.best):
            self.best = score
            print(f"+++ BEST validation score: {percent(score)}% [{metric}]")
            if dist.current().is_main:
                save_weights(self.ctx.net, self.ctx.workdir / "weights_validation")
                print("    'weights_validation' saved!")
                self.save_state("net_state_validation")
            for t in self.ctx.targets:
                write_partition_reports(t, "validation", results[t.section])
        else:
            print(f"--- LOWER validation score: {percent(score)}% [{metric}] "
                  f"(best was {percent(self.best)}%)")  # type: ignore[arg-type]
        print(metrics_block(results[first.section].cm.macro()), flush=True)

    def _write_timings(self) -> None:
        if not self.ctx.bench or not self.timings or not dist.current().is_main:
            return
        folder = self.ctx.workdir / "timings"
        folder.mkdir(exist_ok=True)
        lines = ["# batches stimuli data_s compute_s stimuli_per_s"]
        previous = (0, 0)
        for batches, stimuli, data_s, step_s in self.timings:
            seen = stimuli - previous[1]
            rate = seen / (data_s + step_s) if data_s + step_s > 0 else 0.0
            lines.append(f"{batches} {stimuli} {data_s:.4f} {step_s:.4f} {rate:.1f}")
            previous = (batches, stimuli)
        (folder / "learning.dat").write_text("\n".join(lines) + "\n")
        total = sum(d + s for _, _, d, s in self.timings)
        data = sum(d for _, _, d, _ in self.timings)
        print(f"[LOG] Learning timings (timings/learning.dat): {total:.1f} s, of which "
              f"{data:.1f} s waiting for data")


# ------------------------------------------------------------------------------------------------
# learning-rate range test (-find-lr N)
# ------------------------------------------------------------------------------------------------
FIND_LR_START, FIND_LR_END = 1e-6, 10.0


def find_lr(ctx: RunContext, optimizer: Any, nb_stimuli: int) -> None:
    """Exponential lr from 1e-6 to 10 over N stimuli; loss per target -> find_lr_<cell>.dat."""
    bs = ctx.sp.batch_size
    nb_batches = max(2, math.ceil(nb_stimuli / bs))
    size = ctx.sp.partition_sizes()["Learn"]
    rng = np.random.default_rng([ctx.seed & 0xFFFFFFFF, 0xF1D])
    positions = rng.integers(0, size, size=nb_batches * bs).tolist()
    loader = ctx.sp.loader("Learn", shuffle=False, indices=positions, with_ids=True)
    ctx.net.train()
    rows: dict[str, list[tuple[float, float]]] = {t.cell: [] for t in ctx.targets}
    progress = Progress(nb_batches * bs, "find-lr", ctx.report_every)
    try:
        for k, (x, labels, _) in enumerate(loader):
            lr = FIND_LR_START * (FIND_LR_END / FIND_LR_START) ** (k / (nb_batches - 1))
            optimizer.rate_override = lr
            outs = ctx.net(x.to(ctx.device, ctx.dtype))
            y = labels.to(ctx.device)
            losses = [t.loss(outs[t.cell], t.map_labels(y)) for t in ctx.targets]
            sum(losses).backward()
            optimizer.step()
            for t, loss in zip(ctx.targets, losses, strict=True):
                rows[t.cell].append((lr, float(loss.detach())))
            progress.update(len(labels))
            if not all(math.isfinite(float(v.detach())) for v in losses):
                break  # diverged: the curve is complete
    finally:
        progress.close()
        optimizer.rate_override = None
    for t in ctx.targets:
        _write_find_lr(ctx.workdir, t.cell, rows[t.cell])


def _write_find_lr(workdir: Path, cell: str, rows: list[tuple[float, float]]) -> None:
    """find_lr_<cell>.dat (rows ``lr loss``, the diverged one included) and its plot."""
    from n2q.io.plots import plot_curve

    name = f"find_lr_{cell}"
    (workdir / f"{name}.dat").write_text(
        "# learning_rate loss\n" + "".join(f"{lr:.6g} {loss:.6g}\n" for lr, loss in rows))
    finite = [(lr, loss) for lr, loss in rows if math.isfinite(loss)]
    plot_curve(workdir / f"{name}.png", [lr for lr, _ in finite], [loss for _, loss in finite],
               xlabel="learning rate", ylabel="loss",
               title=f"learning-rate range test ({cell})", log_x=True)
    print(f"[LOG] Learning-rate range test ({name}.dat, {name}.png)")


# ------------------------------------------------------------------------------------------------
# -fuse: fold BatchNorm into the preceding Conv (float)
# ------------------------------------------------------------------------------------------------
def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@torch.no_grad()
def fold_batchnorm(net: Any) -> list[str]:
    """Fold each BatchNorm whose only input is a Conv (its sole consumer, no activation, no
    quantizer) into that Conv: w' = w * s, b' = (b - mean) * s + beta with
    s = gamma / sqrt(var + eps) per output channel; the BatchNorm keeps only its activation.
    Returns one line per fold."""
    lines = []
    for name, bn in net.cells.items():
        if getattr(bn, "type", "") != "BatchNorm" or len(net.inputs[name]) != 1:
            continue
        src = net.inputs[name][0]
        conv = net.cells[src] if src in net.cells else None
        if conv is None or getattr(conv, "type", "") != "Conv" or net.consumers(src) != [name]:
            continue
        if (conv.weight_quantizer is not None or conv.act_quantizer is not None
                or type(conv.activation).__name__ not in ("Identity", "Linear")
                or getattr(bn, "folded", False)):
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [O]
        conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        new_bias = (bias - bn.running_mean) * scale + bn.bias
        if conv.bias is None:
            conv.bias = torch.nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)
        bn.op = _identity
        bn.folded = True
        lines.append(f"{name} folded into {src}")
    return lines
