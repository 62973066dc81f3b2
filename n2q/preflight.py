"""Everything a run can validate before it writes its first file (issue 16).

``n2q.run.prepare`` calls :func:`check_run` once the network, the data and the weights to load
are known good and before ``seed.dat``, the graph or any folder is written: the output paths
(n2q.io.outputs), a Learn partition to learn from, stimuli of the size ``[sp]`` declares in
every partition the run reads, and a network ``-qat-sat`` can fuse. A refused run thus leaves
the working directory as it found it, and a mistake that would show after an hour of learning
shows at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from n2q.errors import UserError, is_allocation_failure

if TYPE_CHECKING:  # pragma: no cover
    from n2q.options import Options
    from n2q.train.context import RunContext


def check_run(ctx: RunContext, options: Options, seed_file: bool) -> None:
    """UserError for the first thing that would make this run fail later (``seed_file``: the
    run writes seed.dat)."""
    from n2q.io.outputs import check_outputs, run_outputs

    learning = bool(options.learn or options.learn_epoch)
    check_outputs(ctx.workdir, run_outputs(
        ctx.cfg.path.name, [t.section for t in ctx.targets], [t.cell for t in ctx.targets],
        seed_file=seed_file, learn=learning, resume=options.l is not None, test=options.test,
        qat_sat=options.qat_sat, bench=options.bench, find_lr=bool(options.find_lr),
        export=options.export))
    if learning or options.find_lr:
        if ctx.learn_size() == 0:
            phase = ("-find-lr" if options.find_lr else
                     "-learn-epoch" if options.learn_epoch else "-learn")
            raise UserError(f"{phase}: the Learn partition is empty, nothing to learn from",
                            file=ctx.cfg.path)
    partitions = (["Learn", "Validation"] if learning or options.find_lr else []) + (
        ["Test"] if options.test else [])
    for partition in partitions:
        check_stimulus_size(ctx, partition)
    if options.test and options.qat_sat:
        check_fusable(ctx.net)
        check_integer_input(ctx)


def check_integer_input(ctx: RunContext) -> None:
    """-qat-fuse takes 8-bit images in [0, 1] as integers 0..255: refuse stimuli that are not
    (a Normalize would be silently dropped, and every prediction changed)."""
    reason = ctx.sp.float_stimuli("Test")
    if reason is not None:
        raise UserError(f"-qat-fuse/-qat-sat: {reason}, but the integer network takes 8-bit "
                        "images in [0, 1] as the integers 0..255: remove that transformation "
                        "to fuse (the first layer learns the scaling), or test without fusion",
                        file=ctx.cfg.path)


def check_stimulus_size(ctx: RunContext, partition: str) -> None:
    """The first stimulus of ``partition`` through its transformations: the provider refuses
    one whose size differs from [sp] (located UserError), now rather than at the first batch."""
    ids = ctx.sp.partition_ids(partition)
    if not len(ids):
        return
    try:
        ctx.sp.stimulus(partition, int(ids[0]), 0)
    except (MemoryError, RuntimeError) as error:
        if not is_allocation_failure(error):
            raise
        raise UserError(f"one {partition} stimulus needs more memory than there is: check the "
                        "sizes of the provider and its transformations", file=ctx.cfg.path
                        ) from None


def check_fusable(net: object) -> None:
    """-qat-sat on a network with nothing to fuse (no SAT quantizers): refused before learning.
    The plan is structural (no weight is computed); when it finds nothing to fuse, fuse_sat
    raises its located error at once, before any work."""
    from n2q.quant.fuse import fuse_sat, plan_fusion

    steps, _ = plan_fusion(net)
    # StepKind.LINEAR / SUM: the integer nodes (kind.value, whatever the enum's module)
    if not any(getattr(step.kind, "value", step.kind) in ("linear", "sum") for step in steps):
        fuse_sat(net)
