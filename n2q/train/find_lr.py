"""The learning-rate range test (``-find-lr N``): the loss per target while the learning rate
grows exponentially from 1e-6 to 10 over N stimuli drawn from Learn; then n2q exits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from n2q.train.context import RunContext
from n2q.train.lifecycle import Lifecycle, run_plan
from n2q.train.progress import Progress
from n2q.train.solvers import N2D2Optimizer

FIND_LR_START, FIND_LR_END = 1e-6, 10.0


def find_lr(ctx: RunContext, optimizer: N2D2Optimizer, nb_stimuli: int) -> None:
    """Exponential lr from 1e-6 to 10 over N stimuli; loss per target -> find_lr_<cell>.dat."""
    bs = ctx.sp.batch_size
    nb_batches = max(2, math.ceil(nb_stimuli / bs))
    size = ctx.sp.partition_sizes()["Learn"]
    rng = np.random.default_rng([ctx.seed & 0xFFFFFFFF, 0xF1D])
    positions = rng.integers(0, size, size=nb_batches * bs).tolist()
    loader = ctx.sp.loader("Learn", shuffle=False, indices=positions, with_ids=True)
    ctx.net.train()
    # the quantizers see the range test as a one-epoch run of nb_batches batches
    lifecycle = Lifecycle(ctx.net)
    lifecycle.plan(run_plan(1, 0, size, bs, optimizer.iteration_size, nb_batches),
                   optimizer.steps)
    lifecycle.start_epoch(1)
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
            lifecycle.after_optimizer(optimizer.steps)
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
