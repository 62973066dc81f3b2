"""The quantizer lifecycle of a learning run (n2q.quant.protocol): what the loop calls when.

- ``bind(cell, net)``: once, when the network is built (by ``n2q.net.build_network``, where
  every path, command line or Python, passes);
- ``plan(RunPlan)``: before the first learning step (:func:`run_plan` computes it);
- ``start_epoch(e)``: before epoch ``e`` (1-based, counting epochs a resumed state already
  trained; with ``-learn N``, e = stimuli seen // Learn size + 1, so a resumed run announces
  again the epoch it stopped in: quantizers derive their state from ``e``, idempotently);
- ``after_step(step)``: after each optimizer step that updated parameters (with IterationSize
  k, every k-th batch), ``step`` = steps of the whole run, restored by ``-l``;
- after each epoch, if any ``wants_calibration(e)``: :func:`calibrate`, one pass over the Learn
  set without gradient, quantizers in inference mode, BatchNorm cells updating their running
  statistics.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from n2q.quant.protocol import RunPlan, quantizers
from n2q.train.progress import Progress


class Lifecycle:
    """The lifecycle calls on every quantizer of one network, and the step counter."""

    def __init__(self, net: Any) -> None:
        self.quantizers = [q for _, q in quantizers(net)]
        self.epoch = 0   # the epoch last announced by start_epoch (0: none yet)
        self.step = 0    # the optimizer steps last announced by after_step

    def plan(self, plan: RunPlan, steps_done: int) -> None:
        self.step = steps_done
        for q in self.quantizers:
            q.plan(plan)

    def start_epoch(self, epoch: int) -> None:
        """Announce ``epoch`` unless it is the one already announced."""
        if epoch == self.epoch:
            return
        self.epoch = epoch
        for q in self.quantizers:
            q.start_epoch(epoch)

    def after_optimizer(self, steps: int) -> None:
        """After ``optimizer.step()``: ``after_step`` when it did update (steps went up)."""
        if steps == self.step:
            return
        self.step = steps
        for q in self.quantizers:
            q.after_step(steps)

    def wants_calibration(self, epochs: range) -> bool:
        """Whether a quantizer asks for calibration after one of ``epochs`` (every one is
        asked: a quantizer may count the questions)."""
        answers = [q.wants_calibration(e) for e in epochs for q in self.quantizers]
        return any(answers)


def run_plan(total_epochs: int, start_epoch: int, learn_size: int, batch_size: int,
             iteration_size: int, batches_per_epoch: int | None = None,
             world_size: int = 1) -> RunPlan:
    """The RunPlan of a run: steps per epoch = the batches of one epoch (default: a pass over
    Learn) / IterationSize (the smallest of the network's groups: the one that steps most
    often)."""
    if batches_per_epoch is None:
        batches_per_epoch = math.ceil(learn_size / batch_size)
    return RunPlan(total_epochs=total_epochs, start_epoch=start_epoch, learn_size=learn_size,
                   batch_size=batch_size,
                   steps_per_epoch=max(1, batches_per_epoch // max(1, iteration_size)),
                   world_size=world_size)  # batch_size: all ranks together (issue 14)


def is_batchnorm(cell: Any) -> bool:
    return getattr(cell, "type", "") == "BatchNorm"


@torch.no_grad()
def calibrate(net: Any, sp: Any, device: torch.device, dtype: torch.dtype, epoch: int,
              report_every: int) -> None:
    """One pass over Learn (partition order) with the quantizers in inference mode and the
    BatchNorm cells in train mode: their running statistics follow the quantized network.
    Everything is back in train mode afterwards."""
    net.eval()
    for cell in net.cells.values():
        if is_batchnorm(cell):
            cell.train()
    for q in (q for _, q in quantizers(net)):
        q.eval()
    size = sp.partition_sizes()["Learn"]
    progress = Progress(size, f"Calibration after epoch {epoch}", report_every)
    try:
        for x, *_ in sp.loader("Learn", shuffle=False, epoch=epoch):
            net(x.to(device, dtype, non_blocking=True))
            progress.update(len(x))
    finally:
        progress.close()
        net.train()
