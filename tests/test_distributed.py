"""Data-parallel learning (n2q.train.distributed, n2q.train.ddp, n2q.train.multidev).

The sharding arithmetic is checked in-process; everything else runs real processes on the CPU
with the gloo backend (NCCL needs GPUs): ranks started by the test itself the way torchrun
starts them (environment RANK / WORLD_SIZE / MASTER_*), by ``-multidev 0,1`` (no CUDA here:
two CPU processes) and by torchrun. References are a single process with the global batch.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import write_idx

from n2q.train import distributed as dist

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# sharding: pure functions
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, bs, world", [(100, 8, 2), (64, 32, 2), (65, 32, 2), (10, 3, 4),
                                          (7, 4, 3), (3, 4, 4)])
def test_learn_shards_cover_the_global_batches(n: int, bs: int, world: int) -> None:
    """Global batch k = order[k*W*B:(k+1)*W*B], rank r its r-th slice; the tail split evenly,
    dropped when shorter than W; every rank has the same number of batches."""
    order = np.random.default_rng(n).permutation(n)
    shards = [dist.learn_shard(r, world)(order, bs) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    for k in range(len(shards[0])):
        together = np.concatenate([shards[r][k] for r in range(world)])
        start = k * bs * world
        expected = order[start:start + bs * world]
        np.testing.assert_array_equal(together, expected)
        dist._STATE.world = world
        try:
            assert dist.global_batch_size(k, n, bs) == len(expected)
        finally:
            dist._STATE.world = 1
    covered = sum(len(b) for s in shards for b in s)
    tail = n % (bs * world)
    assert covered == n - (tail if tail < world else 0)


@pytest.mark.parametrize("n, bs, world", [(100, 8, 2), (7, 4, 3), (3, 4, 4), (0, 4, 2)])
def test_eval_shards_score_every_stimulus_once(n: int, bs: int, world: int) -> None:
    order = np.arange(n)
    batches = [b for r in range(world) for b in dist.eval_shard(r, world)(order, bs)]
    assert all(0 < len(b) <= bs for b in batches)
    assert sorted(np.concatenate(batches + [np.array([], int)]).tolist()) == list(range(n))


def test_loss_weight_makes_the_average_the_global_mean() -> None:
    """Ranks with 3 and 2 stimuli of a 5-stimulus tail: the average of the weighted means is
    the mean of the 5 losses."""
    losses = [np.array([1.0, 2.0, 4.0]), np.array([8.0, 16.0])]
    dist._STATE.world = 2
    try:
        weighted = [dist.loss_weight(len(v), 5) * v.mean() for v in losses]
    finally:
        dist._STATE.world = 1
    assert np.mean(weighted) == pytest.approx(31.0 / 5)


class _Optimizer:
    """What ``ddp.accumulating`` reads of N2D2Optimizer: group passes and IterationSizes."""

    def __init__(self, passes: list[int], sizes: list[int]) -> None:
        from n2q.train.schedules import Schedule
        from n2q.train.solvers import SolverSpec

        self.param_groups = [{"passes": p} for p in passes]
        self.specs = [SolverSpec(schedule=Schedule(iteration_size=k)) for k in sizes]


class _Model:
    def no_sync(self) -> str:
        return "no_sync"


@pytest.mark.parametrize("passes, sizes, accumulating", [
    ([0], [1], False), ([0], [2], True), ([1], [2], False), ([0, 0], [2, 1], False),
    ([0, 1], [4, 3], True), ([3, 1], [4, 3], False)])
def test_no_gradient_exchange_while_every_group_accumulates(
        passes: list[int], sizes: list[int], accumulating: bool) -> None:
    """A batch whose step updates no group runs under no_sync; any group updating: exchange."""
    from n2q.train import ddp

    opt = _Optimizer(passes, sizes)
    assert ddp.accumulating(opt) is accumulating
    dist._STATE.world = 2
    try:
        context = ddp.step_context(_Model(), opt)
    finally:
        dist._STATE.world = 1
    assert (context == "no_sync") is accumulating


def test_provider_shard_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rank computes the same seeded order; the hook only picks the rank's batches."""
    from n2q.config import load_config
    from n2q.data import make_provider

    _tiny_data(tmp_path, monkeypatch)
    ini = _write_ini(tmp_path, batch=8)
    sp = make_provider(load_config(ini), 5)
    whole = [ids for _, _, ids in sp.loader("Learn", shuffle=True, epoch=2, with_ids=True)]
    ranks = [[ids for _, _, ids in sp.loader("Learn", shuffle=True, epoch=2, with_ids=True,
                                             shard=dist.learn_shard(r, 2, ))] for r in range(2)]
    flat = np.concatenate([i.numpy() for i in whole])
    for k, (a, b) in enumerate(zip(*ranks, strict=True)):
        np.testing.assert_array_equal(np.concatenate([a.numpy(), b.numpy()]),
                                      flat[k * 16:(k + 1) * 16])


# ------------------------------------------------------------------------------------------------
# data and networks written by the tests
# ------------------------------------------------------------------------------------------------
def _tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> Path:
    """128 learn / 32 test 8x8 IDX images of 10 classes, class c lights row c % 8."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", 128), ("t10k", 32)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 80, (n, 8, 8))
        images[np.arange(n), labels % 8, :] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz=True)
    if monkeypatch is not None:
        monkeypatch.setenv("N2Q_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


FC = """
[fc1]
Input=sp
Type=Fc
NbOutputs=16
ActivationFunction=Rectifier
ConfigSection=common
{quant}
"""
CONV_BN = """
[conv1]
Input=sp
Type=Conv
KernelDims=3 3
NbOutputs=4
NoBias=1
ActivationFunction=Linear
ConfigSection=common

[bn1]
Input=conv1
Type=BatchNorm
ActivationFunction=Rectifier
Solvers.LearningRate=0.05

[fc1]
Input=bn1
Type=Fc
NbOutputs=16
ActivationFunction=Rectifier
ConfigSection=common
"""
HEAD = """
[database]
Type=MNIST_IDX_Database
Validation={validation}

[sp]
SizeX=8
SizeY=8
BatchSize={batch}
{body}
[fc2]
Input=fc1
Type=Fc
NbOutputs={classes}
ActivationFunction=Linear
ConfigSection=common

[softmax]
Input=fc2
Type=Softmax
NbOutputs={classes}
WithLoss=1

[softmax.Target]

[common]
WeightsFiller=HeFiller
Solvers.LearningRate=0.05
Solvers.Momentum=0.9
Solvers.Decay=0.0005
"""
LSQ = "QWeight=LSQ\nQWeight.Range=15\nQAct=LSQ\nQAct.Range=15\n"
SIMQAT = "QWeight=SimQAT\nQWeight.Range=255\nQAct=SimQAT\nQAct.Range=255\n"


def _write_ini(folder: Path, *, batch: int, bn: bool = False, lsq: bool = False,
               validation: float = 0.0, name: str | None = None, classes: int = 10,
               quant: str = "", common: str = "") -> Path:
    body = CONV_BN if bn else FC.format(quant=LSQ if lsq else quant)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"net{batch}{'_bn' if bn else ''}{'_lsq' if lsq else ''}.ini")
    path.write_text(HEAD.format(batch=batch, body=body, validation=validation, classes=classes)
                    + common)  # the last section is [common]
    return path


def _weights(folder: Path) -> dict[str, np.ndarray]:
    """Every numeric value of a weights folder, per file."""
    return {p.name: np.array(p.read_text().split(), dtype=np.float64)
            for p in sorted(folder.glob("*.syntxt"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), N2Q_DATA=str(data), MPLBACKEND="Agg",
               OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "N2Q_MULTIDEV", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    env.update(extra)
    return env


def _n2q(cwd: Path, data: Path, *args: object, timeout: float = 240
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "n2q", *map(str, args)], cwd=cwd,
                          env=_env(data), capture_output=True, text=True, timeout=timeout)


def _ranks(cwds: list[Path], data: Path, *args: object, timeout: float = 240
           ) -> list[subprocess.CompletedProcess]:
    """The ranks of one run started like torchrun does, each in its own directory."""
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "n2q", *map(str, args)], cwd=cwd,
                              env=_env(data, RANK=str(r), LOCAL_RANK=str(r),
                                       WORLD_SIZE=str(len(cwds)), MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r, cwd in enumerate(cwds)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _dirs(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (tmp_path / name).mkdir()
        out.append(tmp_path / name)
    return out


def _close(a: dict[str, np.ndarray], b: dict[str, np.ndarray], atol: float) -> float:
    assert a.keys() == b.keys() and a
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst <= atol, worst
    return worst


# ------------------------------------------------------------------------------------------------
# learning on two processes
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_ranks_of_32_learn_what_one_process_of_64_learns(tmp_path: Path) -> None:
    """No BatchNorm: the same stimuli per step, the gradient average = the global mean, so
    the weights agree up to float32 rounding (summation order) after 2 epochs; IterationSize=2
    (updates every 2 batches, the first batch of each pair under DDP's no_sync).
    Rank 1 runs in an empty directory: it must stay empty (rank 0 writes everything)."""
    data = _tiny_data(tmp_path)
    one, rank0, rank1 = _dirs(tmp_path, "one", "rank0", "rank1")
    args = ("-learn-epoch", 2, "-seed", 11, "-test")
    every2 = "Solvers.IterationSize=2\n"
    ref = _n2q(one, data, _write_ini(tmp_path / "b64", batch=64, name="net.ini", common=every2),
               *args)
    assert ref.returncode == 0, ref.stderr
    runs = _ranks([rank0, rank1], data,
                  _write_ini(tmp_path / "b32", batch=32, name="net.ini", common=every2), *args)
    assert [r.returncode for r in runs] == [0, 0], runs[1].stderr
    _close(_weights(rank0 / "weights"), _weights(one / "weights"), atol=1e-5)  # 3e-8 seen
    assert list(rank1.iterdir()) == []
    assert runs[1].stdout == "" and runs[1].stderr == ""
    assert sorted(p.name for p in rank0.iterdir()) == sorted(p.name for p in one.iterdir())
    # the test partition was sharded, its confusion matrix summed: every stimulus once
    cm = np.loadtxt(rank0 / "softmax.Target/ConfusionMatrix_test.dat", skiprows=1)
    assert cm[:, 2].sum() == 32
    rate = ref.stdout.split("Final recognition rate: ")[1].split("%")[0]
    assert runs[0].stdout.split("Final recognition rate: ")[1].split("%")[0] == rate


SLB = ("QWeight=SLB\nQWeight.Range=3\nQWeight.TStartTime=0\nQWeight.TEndTime=0.5\n"
       "QWeight.TFactor=2\n")


@pytest.mark.slow
def test_slb_on_two_ranks_learns_what_one_process_learns(tmp_path: Path) -> None:
    """SLB replaces fc1's float weight by logits: the float weight never gets a gradient, and
    after t_end (epoch 2 of 2) neither do the logits. DDP must accept parameters without
    gradient there; 2 x 32 then learns what 1 x 64 learns (logits and one-hot weights)."""
    data = _tiny_data(tmp_path)
    one, rank0, rank1 = _dirs(tmp_path, "one", "rank0", "rank1")
    args = ("-learn-epoch", 2, "-seed", 5)
    ref = _n2q(one, data, _write_ini(tmp_path / "b64", batch=64, name="net.ini", quant=SLB),
               *args)
    assert ref.returncode == 0, ref.stderr
    runs = _ranks([rank0, rank1], data,
                  _write_ini(tmp_path / "b32", batch=32, name="net.ini", quant=SLB), *args)
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    mine, ref_weights = _weights(rank0 / "weights"), _weights(one / "weights")
    assert "fc1_SLB_logits.syntxt" in mine
    _close(mine, ref_weights, atol=1e-5)


@pytest.mark.slow
def test_sync_batchnorm_matches_the_global_batch(tmp_path: Path) -> None:
    """-sync-bn: the batch statistics are those of the 64 stimuli of the global batch.

    Tolerance: the synchronized statistics are reduced in float64 (sum and sum of squares)
    where torch's CPU batch_norm uses float32 (Welford): a few float32 ulps per normalized
    value; after 4 momentum updates the weights differed by 6e-8 when this was written. 1e-5
    leaves room for other thread counts and BLAS while per-rank statistics (no -sync-bn, the
    same run otherwise) are more than 1e-3 away: the check tells the two apart."""
    data = _tiny_data(tmp_path)
    one, multi, per_rank = _dirs(tmp_path, "one", "multi", "per_rank")
    args = ("-learn-epoch", 2, "-seed", 5)
    assert _n2q(one, data, _write_ini(tmp_path, batch=64, bn=True), *args).returncode == 0
    ini = _write_ini(tmp_path, batch=32, bn=True)
    run = _n2q(multi, data, ini, *args, "-multidev", "0,1", "-sync-bn")
    assert run.returncode == 0, run.stderr
    reference = _weights(one / "weights")
    _close(_weights(multi / "weights"), reference, atol=1e-5)
    assert _n2q(per_rank, data, ini, *args, "-multidev", "0,1").returncode == 0
    apart = _weights(per_rank / "weights")
    assert max(float(np.abs(apart[k] - reference[k]).max()) for k in reference) > 1e-3


@pytest.mark.slow
def test_resume_a_two_rank_run_with_two_ranks_and_with_one(tmp_path: Path) -> None:
    """torchrun 2 ranks: 1 epoch, then -l net_state to epoch 2 = 2 epochs straight (exact
    up to rounding); the same state resumed by ONE process of batch 64 (same global batch)
    gives the same weights too."""
    data = _tiny_data(tmp_path)
    straight, part, single = _dirs(tmp_path, "straight", "part", "single")
    ini32 = _write_ini(tmp_path, batch=32, lsq=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_port", str(_free_port()), "-m", "n2q", str(ini32)]
    for cwd, epochs in ((straight, 2), (part, 1)):
        done = subprocess.run(torchrun + ["-learn-epoch", str(epochs), "-seed", "3"],
                              cwd=cwd, env=_env(data), capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
    shutil.copytree(part / "net_state", single / "net_state")  # the state after epoch 1
    run = _n2q(part, data, ini32, "-learn-epoch", 2, "-l", "net_state", "-multidev", "0,1")
    assert run.returncode == 0, run.stderr
    assert "Resuming after 1 epoch(s)" in run.stdout
    expected = _weights(straight / "weights")
    _close(_weights(part / "weights"), expected, atol=1e-6)
    one = _n2q(single, data, _write_ini(tmp_path, batch=64, lsq=True), "-learn-epoch", 2,
               "-l", "net_state")
    assert one.returncode == 0, one.stderr
    _close(_weights(single / "weights"), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# the model side, in two processes started here (n2q.train.ddp)
# ------------------------------------------------------------------------------------------------
WORKER = r"""
import sys
import torch
import torch.distributed as tdist
import torch.nn.functional as F
from n2q.config import load_config
from n2q.net import build_network
from n2q.train import ddp, distributed as dist
from n2q.train.solvers import make_optimizer


class Options:
    dev, sync_bn, compile, dist_timeout, multidev, find_lr = "cpu", True, False, 60, None, 0


def learn(ini, sync):
    torch.manual_seed(0)
    net = build_network(load_config(ini), (1, 8, 8))
    model = ddp.wrap(net)
    opt = make_optimizer(net, 64)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own stimuli
    inits = []
    for step in range(3):
        x = torch.rand(32, 1, 8, 8, generator=g) * (1 + 3 * rank)
        y = torch.randint(0, 10, (32,), generator=g)
        with ddp.step_context(model, opt):
            out = model(x)["softmax"].flatten(1)
            F.cross_entropy(out, y).backward()
        if step == 0 and ini == sys.argv[1]:  # LSQ
            inits = [float(q.step_size) for q in (net.cells["fc1"].weight_quantizer,
                                                  net.cells["fc1"].act_quantizer)]
        opt.step()
        if sync:
            ddp.after_step(net, step == 0)
    return inits, {k: v.clone() for k, v in net.state_dict().items()}


def sync_bn():
    g = torch.Generator().manual_seed(7)  # the same global batch on both ranks
    x_all = torch.randn(64, 3, 4, 4, generator=g) * 2 + 1
    dy_all = torch.randn(64, 3, 4, 4, generator=g)
    w, b = torch.rand(3, generator=g) + 0.5, torch.randn(3, generator=g)
    out = {}
    for name, x in (("global", x_all), ("rank", x_all[32 * rank:32 * (rank + 1)])):
        x = x.clone().requires_grad_()
        wi, bi = w.clone().requires_grad_(), b.clone().requires_grad_()
        mean, var = torch.zeros(3), torch.ones(3)
        if name == "global":
            y = F.batch_norm(x, mean, var, wi, bi, True, 0.1, 1e-5)
            (y * dy_all).sum().backward()
        else:
            y = ddp._SyncBatchNorm.apply(x, wi, bi, mean, var, 1e-5, 0.1)
            (y * dy_all[32 * rank:32 * (rank + 1)]).sum().backward()
            for t in (wi.grad, bi.grad):
                tdist.all_reduce(t)  # what DDP does (times W: the loss here is a sum)
        out[name] = (y.detach(), x.grad, wi.grad, bi.grad, mean, var)
    return out


with dist.session(Options()):
    rank = dist.current().rank
    result = {"synced": learn(sys.argv[1], True), "alone": learn(sys.argv[1], False),
              "simqat": learn(sys.argv[3], True)[1], "simqat alone": learn(sys.argv[3], False)[1],
              "bn": sync_bn()}
    everyone = [None, None]
    tdist.all_gather_object(everyone, result)
    if rank == 0:
        torch.save(everyone, sys.argv[2])
"""


def _workers(tmp_path: Path, *args: object) -> list:
    import torch

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=tmp_path,
                              env=_env(tmp_path, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    return torch.load(args[1], weights_only=False)


@pytest.mark.slow
def test_quantizer_state_and_sync_batchnorm_on_two_ranks(tmp_path: Path) -> None:
    """LSQ: each rank initializes its step sizes from its own first batch (they differ); after
    learning with ``after_step`` both ranks hold the same state, bit for bit; without it they
    drift apart (the check can fail). SimQAT: the tracked ranges (min / max reduced) too.
    Synchronized BatchNorm on 2 x 32 = F.batch_norm on 64:
    outputs, input gradients, summed weight/bias gradients, running statistics."""
    import torch

    ranks = _workers(tmp_path, _write_ini(tmp_path, batch=32, lsq=True), tmp_path / "out.pt",
                     _write_ini(tmp_path, batch=32, quant=SIMQAT, name="simqat.ini"))
    (inits0, state0), (inits1, state1) = ranks[0]["synced"], ranks[1]["synced"]
    assert inits0[1] != pytest.approx(inits1[1], rel=1e-3)  # activations: their own batch
    assert inits0[0] == inits1[0]  # weights: the same on both ranks
    assert state0.keys() == state1.keys()
    for key in state0:
        assert torch.equal(state0[key], state1[key]), key
    alone0, alone1 = ranks[0]["alone"][1], ranks[1]["alone"][1]
    assert not all(torch.equal(alone0[k], alone1[k]) for k in alone0)
    simqat0, simqat1 = ranks[0]["simqat"], ranks[1]["simqat"]
    ranges = [k for k in simqat0 if k.endswith((".min", ".max"))]
    assert len(ranges) == 4  # fc1's weight and activation quantizers
    for key in simqat0:
        assert torch.equal(simqat0[key], simqat1[key]), key
    alone0, alone1 = ranks[0]["simqat alone"], ranks[1]["simqat alone"]
    assert not all(torch.equal(alone0[k], alone1[k]) for k in ranges)
    for rank in (0, 1):
        y, dx, dw, db, mean, var = ranks[rank]["bn"]["rank"]
        gy, gdx, gdw, gdb, gmean, gvar = ranks[rank]["bn"]["global"]
        part = slice(32 * rank, 32 * (rank + 1))
        torch.testing.assert_close(y, gy[part], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dx, gdx[part], rtol=1e-5, atol=1e-5)
        for mine, ref in ((dw, gdw), (db, gdb), (mean, gmean), (var, gvar)):
            torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# failures end the run
# ------------------------------------------------------------------------------------------------
def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("Error", "Traceback"))]


@pytest.mark.slow
def test_a_killed_rank_stops_the_run_with_one_line(tmp_path: Path) -> None:
    data = _tiny_data(tmp_path)
    ini = _write_ini(tmp_path, batch=8)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "n2q", str(ini), "-learn-epoch", "500", "-multidev", "0,1"],
        cwd=tmp_path, env=_env(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        rank1 = _wait_for_rank(launcher.pid, 1, tmp_path / "weights_init")
        os.kill(rank1, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 1
    assert _error_lines(stderr) == [
        "Error: rank 1 of 2 was killed by SIGKILL; the other processes were stopped (folders "
        "written so far are complete: resume with -l net_state...)"]


def _wait_for_rank(parent: int, rank: int, ready: Path, timeout: float = 120) -> int:
    """The pid of the launcher's child of rank ``rank``, once learning has begun."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:  # a short-lived child (the launcher's CUDA probe)
                continue
            if f"RANK={rank}".encode() in environ and ready.is_dir():
                time.sleep(0.5)
                return int(child)
        time.sleep(0.2)
    raise AssertionError("rank never started")


@pytest.mark.slow
def test_bad_data_on_one_rank_stops_the_run_with_one_line(tmp_path: Path) -> None:
    """One unreadable image among 64: the rank whose shard holds it fails when it reads it,
    the other one (waiting for it in the gradient all-reduce) stops, the launcher prints ONE
    line: the failing rank's, naming the file. No traceback, exit status 2."""
    root = tmp_path / "data" / "images"
    rng = np.random.default_rng(1)
    for label in range(8):
        (root / str(label)).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8).tobytes()
            (root / str(label) / f"{i}.pgm").write_bytes(b"P5\n8 8\n255\n" + pixels)
    bad = root / "5" / "3.pgm"
    bad.write_bytes(b"P5\n8 8\n255\n" + b"\0" * 7)  # truncated: 7 of 64 pixels
    ini = _write_ini(tmp_path, batch=8, classes=8)
    ini.write_text(ini.read_text().replace(
        "Type=MNIST_IDX_Database", f"Type=DIR_Database\nDataPath={root}\nLearn=1.0"))
    run = _n2q(tmp_path, tmp_path / "data", ini, "-learn-epoch", 1, "-multidev", "0,1",
               timeout=120)
    assert run.returncode == 2, run.stderr
    lines = _error_lines(run.stderr)
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(("Error: rank 0 of 2: ", "Error: rank 1 of 2: "))
    assert str(bad) in lines[0] and "unreadable image" in lines[0]
