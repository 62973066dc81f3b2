"""Seeding, the learning-loop helper and scoring, for networks built with the Python API.

:func:`learn` runs n2q's own learning loop (``n2q.train.learn.Learner``), the one behind
``n2q NET.ini -learn-epoch N``: same optimizer and solver keys, same data order, same files
(``weights_validation/``, the target folders). With the same seed, a network built in Python
learns exactly what the same INI learns. The plain PyTorch alternative needs none of this:
``net(x)`` returns the target outputs, ``provider.loader("Learn")`` the batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from n2q.errors import UserError

_SEED = {"value": 1}


def seed(value: int) -> None:
    """Seed python, numpy and torch (fillers, dropout) and the data order of the providers
    built afterwards, as ``-seed`` does: call it before building the network."""
    from n2q.run import seed_everything

    if int(value) <= 0:
        raise UserError(f"seed({value}): use a positive integer, as -seed does")
    _SEED["value"] = int(value)
    seed_everything(int(value))


def current_seed() -> int:
    """The seed of the last :func:`seed` call (1 before any)."""
    return _SEED["value"]


def _device(device: str | Any) -> Any:
    """None: the first GPU when there is one, else the CPU; else as ``-dev`` ("cpu", "0",
    "cuda:1") or a torch.device."""
    import torch

    from n2q.run import resolve_device

    if isinstance(device, torch.device):
        return device
    if device is None:
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    return resolve_device(str(device), explicit=True)


def context(net: Any, *, workdir: str | Path = ".", device: str | Any = None,
            metric: str = "Sensitivity", report_every: int = 100) -> Any:
    """The RunContext of n2q's loop for ``net`` (a :class:`n2q.Network` with a provider)."""
    from n2q.train.context import RunContext
    from n2q.train.metrics import METRICS
    from n2q.train.targets import make_targets

    if getattr(net, "provider", None) is None:
        raise UserError("this network has no provider: build it with a Provider (or from an "
                        "INI file that has [sp]), or learn it with your own PyTorch loop")
    if metric not in METRICS:
        from n2q.errors import did_you_mean

        raise UserError(f"metric '{metric}'{did_you_mean(metric, METRICS)}; valid: "
                        f"{', '.join(METRICS)}")
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    import torch

    sp = net.provider.stimuli
    dev, dtype = _device(device), _dtype(net)
    if dtype == torch.float16 and dev.type == "cpu":
        raise UserError("DefaultDataType=Float16 learning needs a GPU (device=0); use Float32 "
                        "on the CPU")
    net.to(device=dev, dtype=dtype)
    return RunContext(cfg=net.config, sp=sp, net=net, device=dev, seed=sp.seed,
                      targets=make_targets(net, sp, folder), metric=metric,
                      report_every=report_every, workdir=folder, dtype=dtype)


def _dtype(net: Any) -> Any:
    """The INI's DefaultDataType (float32 for networks built in Python)."""
    import torch

    from n2q.config import read_globals

    return getattr(torch, read_globals(net.config).dtype) if net.config is not None \
        else torch.float32


def learn(net: Any, *, epochs: int = 0, stimuli: int = 0, log_epoch: int = 1,
          log: int = 1000, workdir: str | Path = ".", device: str | Any = None,
          metric: str = "Sensitivity") -> Path | None:
    """Learn ``epochs`` shuffled passes over Learn (``-learn-epoch``) or ``stimuli`` stimuli
    drawn with replacement (``-learn``), validating at each log point and saving the best
    weights in ``workdir/weights_validation`` (``weights/`` without a Validation partition).
    The optimizer is rebuilt from the cells' solver keys at each call, so quantizers and
    solver settings changed between two calls are taken into account. ``device``: None for
    the first GPU when there is one, else as ``-dev`` ("cpu", "0"). Returns the folder
    holding the best weights (None: the last weights are the result)."""
    from n2q.train.learn import Learner, LearnPlan
    from n2q.train.solvers import make_optimizer

    if (epochs > 0) == (stimuli > 0) or epochs < 0 or stimuli < 0:
        raise UserError(f"learn(epochs={epochs}, stimuli={stimuli}): give one of them, > 0")
    if log_epoch < 1 or log < 1:
        raise UserError(f"learn(log_epoch={log_epoch}, log={log}): both must be >= 1")
    ctx = context(net, workdir=workdir, device=device, metric=metric)
    if ctx.sp.partition_sizes().get("Learn", 0) == 0:
        raise UserError("learn(): the Learn partition is empty, nothing to learn from")
    optimizer = make_optimizer(net, ctx.sp.batch_size)
    plan = LearnPlan(epochs=epochs, stimuli=stimuli, log_epoch=log_epoch, log=log)
    return Learner(ctx, optimizer, plan).run()


def test(net: Any, partition: str = "Test", *, workdir: str | Path = ".",
         device: str | Any = None, model: Any = None) -> dict[str, float]:
    """Score ``partition``: {target section: recognition rate in [0, 1]}. ``model``: another
    module returning the same target dict (the fused network of :meth:`Network.fuse`)."""
    from n2q.train.evaluate import evaluate

    ctx = context(net, workdir=workdir, device=device)
    if ctx.sp.partition_sizes().get(partition, 0) == 0:
        raise UserError(f"test(): the {partition} partition is empty")
    results = evaluate(ctx, partition, net=model if model is not None else net)
    return {section: score.cm.recognition_rate() for section, score in results.items()}
