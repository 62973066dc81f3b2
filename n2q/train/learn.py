"""The learning phase (spec/cli.md, "What a run does and writes").

``Learner`` runs ``-learn-epoch N`` (shuffled full passes) or ``-learn N`` (stimuli drawn with
replacement), validating at the log points, saving ``weights_validation/`` +
``net_state_validation/`` on each new best and ``net_state/`` (the latest) at every log point
(``weights/`` + ``net_state/`` without a Validation partition) and the target folders' files,
and calling the quantizer lifecycle (n2q.train.lifecycle).

Exact resume: the full state is saved at log points only; it holds the net, the solver state
and step counters, the RNG states and the position (epoch or stimuli done), and the data order
of an epoch / a stimuli chunk is a pure function of (seed, epoch / chunk). A resumed run thus
computes exactly what the uninterrupted run computes after that log point.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2q.errors import UserError, notice
from n2q.train import ddp  # issue 14: data-parallel learning, GPU fast path
from n2q.train import distributed as dist  # issue 14
from n2q.train.context import RunContext
from n2q.train.evaluate import evaluate, write_partition_reports
from n2q.train.lifecycle import Lifecycle, calibrate, run_plan
from n2q.train.metrics import is_better, metrics_block, percent
from n2q.train.progress import Progress
from n2q.train.reports import SuccessLog
from n2q.train.solvers import N2D2Optimizer
from n2q.train.tally import LearnTally, Timing, write_timings
from n2q.train.targets import TargetInfo

SYNC_INTERVAL = 0.25  # seconds between two reads of the loss and accuracy during learning


@dataclass
class LearnPlan:
    epochs: int = 0         # -learn-epoch
    stimuli: int = 0        # -learn
    log_epoch: int = 1
    log: int = 1000


class Learner:
    """One learning phase. ``run()`` returns the folder holding the best weights."""

    def __init__(self, ctx: RunContext, optimizer: N2D2Optimizer, plan: LearnPlan) -> None:
        self.ctx = ctx
        self.opt = optimizer
        self.plan = plan
        self.has_validation = ctx.sp.partition_sizes().get("Validation", 0) > 0
        self.tally = LearnTally(ctx.targets, ctx.device)
        self.success = {t.section: SuccessLog() for t in ctx.targets}
        # (section, correct, size) per batch and target, still on the device
        self.unsynced: list[tuple[str, torch.Tensor, int | torch.Tensor]] = []
        self.validation: dict[str, list[tuple[int, float]]] = {t.section: [] for t in ctx.targets}
        self.epoch = 0          # epochs completed
        self.stimuli = 0        # learn stimuli seen
        self.batches = 0        # learn batches seen
        self.best: float | None = None
        self.timings: list[Timing] = []
        self.pending_lines: list[str] = []
        optimizer.on_rate_change = self.pending_lines.append
        self.lifecycle = Lifecycle(ctx.net)
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
        self._plan_quantizers()
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
        if self.ctx.bench and dist.current().is_main:
            write_timings(self.ctx.workdir, self.timings)
        return self.ctx.workdir / "weights_validation" if self.has_validation else None

    def _learn_size(self) -> int:
        return self.ctx.learn_size()  # > 0: checked by n2q.run

    def _plan_quantizers(self) -> None:
        """The quantizers' RunPlan: -learn N counts ceil(N / Learn size) epochs."""
        size = self._learn_size()
        if self.plan.epochs:
            total, done = self.plan.epochs, self.epoch
        else:
            total, done = math.ceil(self.plan.stimuli / size), self.stimuli // size
        world = dist.current().world  # issue 14: the global batch of all ranks
        self.lifecycle.plan(run_plan(total, done, size, self.ctx.sp.batch_size * world,
                                     self.opt.iteration_size, world_size=world), self.opt.steps)

    def _calibrate_after(self, epochs: range) -> None:
        """The calibration pass after the epochs just completed, when a quantizer asks."""
        if epochs and self.lifecycle.wants_calibration(epochs):
            calibrate(self.ctx.net, self.ctx.sp, self.ctx.device, self.ctx.dtype, epochs[-1],
                      self.ctx.report_every)

    def _run_epochs(self) -> None:
        n = self.plan.epochs
        if self.epoch >= n:
            notice(f"the saved state has already learned {self.epoch} epoch(s): nothing left "
                   f"to learn for -learn-epoch {n}")
            return
        for epoch in range(self.epoch, n):
            self.lifecycle.start_epoch(epoch + 1)
            loader = self.ctx.sp.loader("Learn", shuffle=True, epoch=epoch, with_ids=True,
                                        shard=dist.shard())
            self._learn_batches(loader, self._learn_size(), f"Epoch {epoch + 1}/{n}")
            self.epoch = epoch + 1
            self._calibrate_after(range(self.epoch, self.epoch + 1))
            if self.epoch % self.plan.log_epoch == 0 or self.epoch == n:
                self._log_point()

    def _chunk_size(self) -> int:
        """-log rounded up to whole batches: a log point falls between two batches."""
        bs = self.ctx.sp.batch_size
        return max(1, math.ceil(self.plan.log / bs)) * bs

    def _run_stimuli(self) -> None:
        n = self.plan.stimuli
        size = self._learn_size()
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
                if not self.plan.epochs:
                    self.lifecycle.start_epoch(self.stimuli // self._learn_size() + 1)
                n = dist.batch_stimuli(k, total, len(labels), self.ctx.sp.batch_size)  # global
                loss = self._train_batch(x, labels, ids, n)
                losses.append(loss)
                self.stimuli += n
                self.batches += 1
                if not self.plan.epochs:
                    self._stimuli_epochs_done(n)
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
        self.lifecycle.after_optimizer(self.opt.steps)
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

    def _stimuli_epochs_done(self, n: int) -> None:
        """-learn N: the epochs (Learn size stimuli each; the last one ends with the run)
        completed by the batch of ``n`` stimuli just learned, then their calibration."""
        size = self._learn_size()
        before = (self.stimuli - n) // size
        done = self.stimuli // size
        if self.stimuli >= self.plan.stimuli:
            done = math.ceil(self.plan.stimuli / size)
        self._calibrate_after(range(before + 1, done + 1))

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
        ddp.consistent(self.ctx.net)  # issue 14: one model on every rank
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
            # the latest full state beside the best one (N2D2's net_state/): -l net_state
            # resumes from this log point, not from the last best one
            if dist.current().is_main:
                self.save_state("net_state")
        dist.barrier()  # issue 14: the other ranks may read what rank 0 just wrote

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
            if dist.current().is_main:  # issue 14: rank 0 writes
                save_weights(self.ctx.net, self.ctx.workdir / "weights_validation")
                print("    'weights_validation' saved!")
                self.save_state("net_state_validation")
            for t in self.ctx.targets:
                write_partition_reports(t, "validation", results[t.section])
        else:
            print(f"--- LOWER validation score: {percent(score)}% [{metric}] "
                  f"(best was {percent(self.best)}%)")  # type: ignore[arg-type]
        print(metrics_block(results[first.section].cm.macro()), flush=True)
