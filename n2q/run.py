"""``run(options)``: the phases of one n2q command, in the spec's order (spec/cli.md).

load the network file -> seed -> data (partition sizes) -> network (summary, graph) ->
load (-w / -l) -> find-lr (exits) -> learn -> test (best weights reloaded; -fuse / -qat-sat)
-> export. Everything is written in the current directory.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from n2q.errors import UserError, notice
from n2q.options import Options, describe
from n2q.train.distributed import barrier, reseed_rank, session, silence_reports
from n2q.train.distributed import current as current_dist  # issue 14: rank / world

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from n2q.config import Config
    from n2q.train.context import RunContext

SEED_FILE = "seed.dat"


# ------------------------------------------------------------------------------------------------
# the network file (INI, or ONNX: an in-memory INI holding an [onnx] section, n2q.net.onnx)
# ------------------------------------------------------------------------------------------------
def load_network_file(path: str) -> Config:
    """The Config of ``n2q NET.ini`` or ``n2q NET.onnx``."""
    file = Path(path)
    if not file.exists():
        raise UserError(f"no such network file: {path}")
    if not file.is_file():  # /dev/null, a folder, a fifo
        raise UserError(f"{path} is not a file: give an INI or .onnx network file")
    if file.suffix.lower() == ".onnx":
        return onnx_file_config(file)
    from n2q.config import load_config

    return load_config(file)


def onnx_file_config(file: Path) -> Config:
    """The Config of ``n2q model.onnx``: an in-memory INI with an [onnx] section, a default
    provider sized from the graph input and a target per graph output (n2q.net.onnx)."""
    from n2q.net.onnx_file import config_for_onnx_file

    return config_for_onnx_file(file)


# ------------------------------------------------------------------------------------------------
# seed and device
# ------------------------------------------------------------------------------------------------
def choose_seed(options: Options, saved: int | None, workdir: Path) -> tuple[int, bool]:
    """(seed, read from seed.dat): -seed N; a resumed state's seed; seed.dat for runs that do
    not learn (so that their partitions are the learning run's); else the time."""
    learning = bool(options.learn or options.learn_epoch or options.find_lr)
    if saved is not None:
        if options.seed and options.seed != saved:
            notice(f"-seed {options.seed} ignored: the saved state was learned with seed "
                   f"{saved}, which its partitions and data order need")
        return saved, False
    if options.seed:
        return options.seed, False
    seed_file = workdir / SEED_FILE
    if not learning and seed_file.exists():
        from n2q.io.seedfile import read_seed_file

        return read_seed_file(seed_file), True  # < 2^64, a located error otherwise
    return int(time.time()) & 0x7FFFFFFF, False


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def resolve_device(spec: str, explicit: bool) -> torch.device:
    """``-dev``: GPU index, cpu or cuda:N. Without CUDA, a GPU index falls back to the CPU
    (notice when asked for explicitly); ``cuda:N`` without CUDA is an error."""
    import torch

    if spec == "cpu":
        return torch.device("cpu")
    index = int(spec.split(":")[1]) if ":" in spec else int(spec) if spec.isdigit() else 0
    if not torch.cuda.is_available():
        if spec.startswith("cuda"):
            raise UserError(f"-dev {spec}: no CUDA GPU is available here; use -dev cpu")
        if explicit:
            notice(f"-dev {spec}: no CUDA GPU available, running on the CPU")
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if index >= count:
        raise UserError(f"-dev {spec}: there are {count} GPU(s) (indices 0..{count - 1})")
    torch.backends.cudnn.benchmark = True
    return torch.device("cuda", index)


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def run(options: Options) -> None:
    """The phases of one command: prepare, then find-lr (exits) or learn and/or test."""
    start = time.perf_counter()
    with session(options):  # issue 14: one process, or one rank of torchrun / -multidev
        for line in describe(options):
            print(line)
        check_export(options.export)
        ctx, state = prepare(options, Path("."))
        if options.find_lr:
            run_find_lr(ctx, options)
            return
        learned = bool(options.learn or options.learn_epoch)
        best_folder = run_learning(ctx, options, state) if learned else None
        if options.test:
            run_test(ctx, options, best_folder, learned)
        if options.export and current_dist().is_main:  # n2q.export: the best weights of a
            from n2q.export import export_from_run  # learning run not reloaded by -test

            export_from_run(ctx, options.export, best_folder if not options.test else None)
        print(f"Time elapsed: {time.perf_counter() - start:.1f} s")


def prepare(options: Options, workdir: Path) -> tuple[RunContext, dict[str, Any] | None]:
    """Network file, seed, data, network, -w / -l weights; then seed.dat and the graph.

    Those files are written only once the INI, the data and the weights to load are known
    good: a bad input leaves nothing behind. Returns the context and the -l state."""
    from n2q.io.atomic import recover_interrupted
    from n2q.preflight import check_run

    if current_dist().is_main:  # issue 14: rank 0 repairs, the others wait to read
        recover_interrupted(workdir)  # folders a killed run left mid-replacement (notice)
    barrier()
    print(f"Loading network configuration file {options.network}")
    cfg = load_network_file(options.network)
    state = read_saved_state(options.l) if options.l else None
    saved_seed = int(state["progress"]["seed"]) if state and "progress" in state else None
    seed, from_file = choose_seed(options, saved_seed, workdir)
    seed_everything(seed)
    ctx = build_context(cfg, options, seed, workdir)
    load_initial_weights(ctx, options, state)
    check_test_index(ctx, options)
    check_run(ctx, options, seed_file=not from_file)  # before the first file is written
    if current_dist().is_main:  # issue 14: rank 0 writes
        if not from_file:
            (workdir / SEED_FILE).write_text(str(seed))
        write_run_files(ctx)
    return ctx, state


def check_export(kind: str | None) -> None:
    """-export: the type is checked before any work (n2q.export)."""
    if kind is not None:
        from n2q.export import check_export_type

        check_export_type(kind)


def read_saved_state(folder: str) -> dict[str, Any]:
    """The whole saved state of -l (read once; the network, solver, progress and RNG parts are
    applied by the phases that need them)."""
    from n2q.io.state import load_state

    state = load_state(folder, restore_rng=False)
    if "net" not in state:
        raise UserError(f"{folder} holds no network state (not an n2q net_state folder)")
    return state


def build_context(cfg: Config, options: Options, seed: int, workdir: Path) -> RunContext:
    """Network, data, targets, device; prints the partition sizes and the summary.

    The network is built (and its solver keys checked) from the provider's size alone, before
    the data base loads: a mistake in a layer section shows at once, even for ImageNet."""
    from n2q.data import make_provider
    from n2q.data.provider import StimuliProvider, provider_section
    from n2q.net import build_network
    from n2q.train.context import RunContext
    from n2q.train.solvers import check_network_solvers
    from n2q.train.targets import make_targets

    provider = provider_section(cfg)
    net = build_network(cfg, StimuliProvider._read_size(cfg[provider]))
    check_network_solvers(net)
    device, dtype = device_and_dtype(cfg, options)
    sp = make_provider(cfg, seed, provider)
    sizes = sp.partition_sizes()
    print(f"Learning database size: {sizes.get('Learn', 0)} images")
    print(f"Validation database size: {sizes.get('Validation', 0)} images")
    print(f"Testing database size: {sizes.get('Test', 0)} images")
    print(net.summary())
    targets = make_targets(net, sp, workdir)
    silence_reports(targets)  # issue 14: ranks > 0 write no target files
    for name in cfg.unused_sections():
        notice(f"unused section [{name}]")
    net.to(device=device, dtype=dtype)
    return RunContext(cfg=cfg, sp=sp, net=net, device=device, seed=seed, targets=targets,
                      metric=options.valid_metric, report_every=options.report,
                      workdir=workdir, bench=options.bench, dtype=dtype)


def check_test_index(ctx: RunContext, options: Options) -> None:
    size = ctx.sp.partition_sizes().get("Test", 0)
    if options.test and size and options.test_index >= size:
        raise UserError(f"-test-index {options.test_index}: out of range, the Test partition "
                        f"has {size} stimuli (indices 0..{size - 1})")


def write_run_files(ctx: RunContext) -> None:
    """The labels logs of the target folders and the graph ``<ini>.png`` (+ ``.dot``)."""
    from n2q.io.graph import draw_graph
    from n2q.train.targets import write_labels_logs

    write_labels_logs(ctx.targets, ctx.sp)
    graph = ctx.workdir / ctx.cfg.path.name
    draw_graph(ctx.net, graph)
    print(f"[LOG] Network graph ({graph.name}.png)")


def device_and_dtype(cfg: Config, options: Options) -> tuple[torch.device, torch.dtype]:
    """-dev when given; else the GPU for DefaultModel=*_CUDA (when there is one), the CPU for
    other models. DefaultDataType=Float64 / Float16 sets the network's precision."""
    import torch

    from n2q.config import read_globals

    settings = read_globals(cfg)
    explicit = any(g.startswith("-dev") for g in options.given)
    if explicit or (settings.use_gpu and torch.cuda.is_available()):
        device = resolve_device(options.dev, explicit)
    else:
        device = torch.device("cpu")
    device = current_dist().device or device  # issue 14: this rank's device
    dtype = getattr(torch, settings.dtype)
    if dtype == torch.float16 and device.type == "cpu":
        raise cfg.globals.error("DefaultDataType", "Float16 learning needs a GPU (-dev 0); "
                                "use Float32 on the CPU")
    return device, dtype


def load_initial_weights(ctx: RunContext, options: Options, state: dict[str, Any] | None) -> None:
    """-w DIR (tolerant of missing files) or the network part of -l DIR."""
    if options.w:
        from n2q.io.weights import load_weights

        if options.w != "/dev/null":  # N2D2's way of saying "no weights"
            if not Path(options.w).is_dir():
                raise UserError(f"-w {options.w}: no such weights folder")
            print(f"Importing weights from directory '{options.w}'.")
        load_weights(ctx.net, options.w, strict_missing=False)
    if state is not None:
        print(f"Loading the saved state '{options.l}'.")
        load_matching(ctx.net, state["net"], options.l, "network")


def load_matching(target: Any, saved: dict[str, Any], folder: str, what: str) -> None:
    """load_state_dict, a mismatch (another INI, changed layers) being the user's error."""
    try:
        target.load_state_dict(saved)
    except (RuntimeError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"-l {folder}: the saved {what} state does not match this network "
                        f"(was it saved by another INI?): {first}") from error


def require_learn(ctx: RunContext, phase: str) -> None:
    if ctx.learn_size() == 0:
        raise UserError(f"{phase}: the Learn partition is empty, nothing to learn from",
                        file=ctx.cfg.path)


def run_find_lr(ctx: RunContext, options: Options) -> None:
    from n2q.train.find_lr import find_lr
    from n2q.train.solvers import make_optimizer

    require_learn(ctx, "-find-lr")
    optimizer = make_optimizer(ctx.net, ctx.sp.batch_size)
    find_lr(ctx, optimizer, options.find_lr)


def run_learning(ctx: RunContext, options: Options, state: dict[str, Any] | None
                 ) -> Path | None:
    """-learn / -learn-epoch, resumed from the -l state; returns the best weights' folder."""
    from n2q.io.state import restore_rng_states
    from n2q.io.weights import save_weights
    from n2q.train.learn import Learner, LearnPlan
    from n2q.train.solvers import make_optimizer

    require_learn(ctx, "-learn-epoch" if options.learn_epoch else "-learn")
    optimizer = make_optimizer(ctx.net, ctx.sp.batch_size * current_dist().world)  # global
    plan = LearnPlan(epochs=options.learn_epoch, stimuli=options.learn,
                     log_epoch=options.log_epoch, log=options.log)
    learner = Learner(ctx, optimizer, plan)
    if state is not None:
        load_matching(optimizer, state["optimizer"], options.l, "solver")
        resume_metric(ctx, options, state["progress"].get("metric"))
        learner.restore(state["progress"])
        restore_rng_states(state["rng"])
        print(f"Resuming after {learner.epoch} epoch(s), {learner.stimuli} stimuli")
    elif current_dist().is_main:
        save_weights(ctx.net, ctx.workdir / "weights_init")
        print("[LOG] Initial weights (weights_init/)")
    reseed_rank(ctx.seed, learner.epoch)  # issue 14: ranks > 0 draw their own dropout masks
    best = learner.run()
    if best is not None and not best.is_dir():  # a state already past the request, moved here
        notice(f"nothing left to learn: testing the weights of the saved state {options.l}")
        return None
    return best


def resume_metric(ctx: RunContext, options: Options, saved: str | None) -> None:
    """The best score of a saved state is in its -valid-metric: a resumed run keeps it."""
    if saved is None or saved == ctx.metric:
        return
    if any(g.startswith("-valid-metric") for g in options.given):
        raise UserError(f"-valid-metric {ctx.metric}: the state {options.l} picks its best "
                        f"model by {saved}; resume with -valid-metric {saved}")
    notice(f"-l {options.l}: validating with {saved}, the metric of the saved state")
    ctx.metric = saved


def run_test(ctx: RunContext, options: Options, best_folder: Path | None,
             learned: bool) -> None:
    """-test: reload the best weights, -fuse / -qat-sat, score Test, write the reports."""
    from n2q.io.weights import load_weights
    from n2q.train.evaluate import evaluate, report_test
    from n2q.train.fold import fold_batchnorm

    if ctx.sp.partition_sizes().get("Test", 0) == 0:
        notice("the Test partition is empty: nothing to test")
        return
    folder = best_folder if learned else weights_to_test(ctx, options)
    if folder is not None:
        print(f"Importing weights from directory '{folder.name}'.")
        load_weights(ctx.net, folder, strict_missing=not options.w_ignore)
    model = ctx.net
    if options.fuse:
        for line in fold_batchnorm(ctx.net) or ["no BatchNorm to fold into a Conv"]:
            print(f"-fuse: {line}")
    if options.qat_sat:
        model = fuse_for_test(ctx)
    limit = options.nb_test or None
    indices = [options.test_index] if options.test_index >= 0 else None
    results = evaluate(ctx, "Test", net=model, limit=limit, indices=indices, desc="Test")
    report_test(ctx, results)
    if options.qat_sat:
        print(compare_fused(ctx, model, limit=limit, indices=indices))


def weights_to_test(ctx: RunContext, options: Options) -> Path | None:
    """Without learning: the weights of -w / -l are already loaded; else the folder a
    previous learning run left here (weights_validation/, then weights/)."""
    if options.w or options.l:
        return None
    folder = next((ctx.workdir / f for f in ("weights_validation", "weights")
                   if (ctx.workdir / f).is_dir()), None)
    if folder is None:
        notice("testing the initial weights: no -w, no -l and no weights folder here")
    return folder


def fuse_for_test(ctx: RunContext) -> Any:
    """-qat-sat: the integer-only network (n2q.quant.fuse), weights_quantized/, new graph."""
    from n2q.io.graph import draw_graph
    from n2q.quant.fuse import fuse_sat, save_fused

    ctx.net.eval()  # fusion reads the running BatchNorm statistics
    fused, float_lines = fuse_sat(ctx.net)
    for line in float_lines:
        notice(line)
    if current_dist().is_main:  # issue 14: rank 0 writes
        save_fused(fused, ctx.workdir / "weights_quantized")
        print("    'weights_quantized' saved!")
        graph = ctx.workdir / ctx.cfg.path.name
        draw_graph(fused, graph)
        print(f"[LOG] Network graph after fusion ({graph.name}.png)")
    return fused.to(ctx.device)


def compare_fused(ctx: RunContext, fused: Any, *, limit: int | None,
                  indices: list[int] | None) -> str:
    """The promise of fusion.md, checked on the Test stimuli just tested: same class as the
    fake-quant network, integer activations in [0, R], share of levels off by one."""
    from n2q.quant.fuse import FusionCheck

    check = FusionCheck()
    ctx.net.eval()
    for x, *_ in ctx.sp.loader("Test", shuffle=False, limit=limit, indices=indices):
        check.update(ctx.net, fused, x.to(ctx.device, ctx.dtype))
    return check.line()
