"""Time per learning epoch: n2q's loop vs a plain PyTorch loop of the same network, same data
tensors and batch size, measured alternately in ONE run (so machine load hits both alike).

    python tools/bench_learn.py --net lenet      # N2D2's LeNet.ini on MNIST ($N2Q_DATA)
    python tools/bench_learn.py --net resnet18   # models/ResNet-18.ini with a CIFAR-10 provider
    python tools/bench_learn.py --net all --epochs 3 --dev cuda --stimuli 4096
    python tools/bench_learn.py --net resnet18-imagenet --device 0   # 3x224x224 (images/s)
    python tools/bench_learn.py --net lenet --compile                 # n2q's -compile step

n2q side: the provider's loader, the network built from the INI, n2q's solver (N2D2 SGD with
momentum, decay and clamping), loss, statistics and progress: everything ``n2q NET.ini
-learn-epoch N`` does per batch (validation and file writing at log points excluded).
Plain side: the same topology written with torch.nn (torchvision's resnet18 for ResNet-18),
torch.optim.SGD(momentum, weight_decay), cross-entropy, batches indexed out of the
preprocessed Learn tensors. The ratio n2q / plain is the median epoch time of each (goal <= 1.15).
ResNet-18 runs on random CIFAR-10-format data written to a temporary folder (timing only);
``resnet18-imagenet`` rescales it to 224x224 (ImageNet-sized steps, 10 classes), to compare
with N2D2's published A100 figure (ResNet-18 SAT on ImageNet: about 1 420 images/s).
``--compile`` runs the n2q side with ``-compile`` (its first epoch, the warm-up, compiles).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from n2q.cli import parse_args  # noqa: E402
from n2q.run import build_context, load_network_file, seed_everything  # noqa: E402
from n2q.train import distributed  # noqa: E402
from n2q.train.learn import Learner, LearnPlan  # noqa: E402
from n2q.train.solvers import make_optimizer  # noqa: E402


def plain_lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5, bias=False), nn.ReLU(), nn.Flatten(),
        nn.Linear(120, 84, bias=False), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(84, 10, bias=False))


def plain_resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(num_classes=10)


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
def write_random_cifar(folder: Path, n_learn: int) -> None:
    """CIFAR-10 binary files (label byte + 3072 pixel bytes per record), random content."""
    rng = np.random.default_rng(0)
    target = folder / "cifar-10-batches-bin"
    target.mkdir(parents=True, exist_ok=True)
    per_file = max(1, -(-n_learn // 5))
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        n = per_file if name != "test_batch.bin" else 64
        records = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        (target / name).write_bytes(records.tobytes())


def resnet_cifar_ini(folder: Path, batch_size: int, size: int = 32) -> Path:
    """models/ResNet-18.ini with its ImageNet data sections replaced by a CIFAR-10 one
    (``size`` > 32: the images rescaled to size x size)."""
    text = (ROOT / "models" / "ResNet-18.ini").read_text()
    data = (f"[database]\nType=CIFAR10_Database\n\n[sp]\nSizeX={size}\nSizeY={size}\n"
            f"NbChannels=3\nBatchSize={batch_size}\n")
    if size != 32:
        data += (f"\n[sp.Transformation-1]\nType=RescaleTransformation\nWidth={size}\n"
                 f"Height={size}\n")
    kept, skip = [], False
    for line in text.splitlines():
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            name = header.group(1)
            skip = name == "database" or name == "sp" or name.startswith("sp.")
            if name == "database":
                kept.append(data)  # where the ImageNet data sections were
        if not skip:
            kept.append(line)
    body = "\n".join(kept)
    body = re.sub(r"^\$NB_CLASSES=.*$", "$NB_CLASSES=10", body, flags=re.M)
    for src in (ROOT / "models").glob("ResNet-*.tpl"):
        (folder / src.name).write_text(src.read_text())
    path = folder / f"ResNet-18-cifar-{size}.ini"
    path.write_text(body)
    return path


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class N2qSide:
    def __init__(self, ini: Path, dev: str, stimuli: int | None, compiled: bool = False):
        options = parse_args([str(ini), "-learn-epoch", "1", "-dev", dev, "-seed", "1",
                              "-report", "1000000"] + (["-compile"] if compiled else []))
        distributed.setup(options)  # one process: records -compile for the Learner
        seed_everything(1)
        with contextlib.redirect_stdout(open(os.devnull, "w")):  # summary, graph notices
            self.ctx = build_context(load_network_file(str(ini)), options, 1, Path("."))
        self.opt = make_optimizer(self.ctx.net, self.ctx.sp.batch_size)
        self.learner = Learner(self.ctx, self.opt, LearnPlan(epochs=1))
        self.ctx.net.train()
        self.stimuli = stimuli
        self.epoch = 0

    def epoch_time(self) -> tuple[float, float]:
        sp = self.ctx.sp
        n = min(self.stimuli or 10**12, sp.partition_sizes()["Learn"])
        loader = sp.loader("Learn", shuffle=True, epoch=self.epoch, with_ids=True, limit=n)
        self.epoch += 1
        synchronize(self.ctx.device)
        start, cpu = time.perf_counter(), time.process_time()
        self.learner._learn_batches(loader, n, "n2q")
        synchronize(self.ctx.device)
        return time.perf_counter() - start, time.process_time() - cpu

    def learn_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        sp = self.ctx.sp
        n = min(self.stimuli or 10**12, sp.partition_sizes()["Learn"])
        xs, ys = zip(*[(x, y) for x, y in sp.loader("Learn", shuffle=False, limit=n)],
                     strict=True)
        return torch.cat(xs), torch.cat(ys)


class PlainSide:
    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 device: torch.device, lr: float, momentum: float, decay: float):
        self.model = model.to(device).train()
        self.x, self.y = x, y
        if device.type == "cuda":
            self.x, self.y = x.pin_memory(), y.pin_memory()
        self.batch_size = batch_size
        self.device = device
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum,
                                   weight_decay=decay, foreach=True)
        self.loss = nn.CrossEntropyLoss()

    def epoch_time(self) -> tuple[float, float]:
        n = len(self.x)
        order = torch.randperm(n)
        synchronize(self.device)
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, n, self.batch_size):
            index = order[i:i + self.batch_size]
            x = self.x[index].to(self.device, non_blocking=True)
            y = self.y[index].to(self.device, non_blocking=True)
            loss = self.loss(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        synchronize(self.device)
        return time.perf_counter() - start, time.process_time() - cpu


def compare(name: str, ini: Path, plain: nn.Module, args: argparse.Namespace) -> float:
    ours = N2qSide(ini, args.dev, args.stimuli, args.compile)
    x, y = ours.learn_tensors()
    spec = ours.opt.specs[0]
    theirs = PlainSide(plain, x, y, ours.ctx.sp.batch_size, ours.ctx.device,
                       spec.schedule.learning_rate, spec.momentum, spec.decay)
    ours.epoch_time()      # warm-up: allocator, caches, cudnn autotuning
    theirs.epoch_time()
    n2q_times, plain_times = [], []
    for _ in range(args.epochs):
        n2q_times.append(ours.epoch_time())
        plain_times.append(theirs.epoch_time())
    print(f"{name}: {len(x)} stimuli per epoch, batch {ours.ctx.sp.batch_size}, "
          f"device {ours.ctx.device}, {torch.get_num_threads()} thread(s), {args.epochs} timed "
          f"epochs each{', n2q compiled (-compile)' if args.compile else ''}")
    for side, times in (("n2q  ", n2q_times), ("plain", plain_times)):
        walls = [w for w, _ in times]
        print(f"  {side}: wall {statistics.median(walls):.3f} s/epoch "
              f"({len(x) / statistics.median(walls):.1f} images/s) "
              f"[{', '.join(f'{w:.3f}' for w in walls)}]; CPU "
              f"{statistics.median(c for _, c in times):.3f} s/epoch")
    a = statistics.median(w for w, _ in n2q_times)
    b = statistics.median(w for w, _ in plain_times)
    cpu = (statistics.median(c for _, c in n2q_times)
           / statistics.median(c for _, c in plain_times))
    print(f"  ratio n2q / plain = {a / b:.3f} (wall, medians), {cpu:.3f} (CPU time, medians), "
          f"{min(n2q_times)[0] / min(plain_times)[0]:.3f} (fastest epochs); goal <= 1.15")
    return a / b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=("lenet", "resnet18", "resnet18-imagenet", "all"),
                        default="all")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side [3]")
    parser.add_argument("--dev", "--device", dest="dev", default="cpu",
                        help="cpu, 0, cuda:N [cpu]")
    parser.add_argument("--compile", action="store_true",
                        help="the n2q side learns with -compile (torch.compile'd step)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); 1 makes CPU timings "
                             "robust on a shared machine")
    parser.add_argument("--stimuli", type=int, default=None,
                        help="learn stimuli per epoch (default: lenet all, resnet18 1024)")
    reference = os.environ.get("N2Q_TEST_REFERENCE", "")
    parser.add_argument("--lenet-ini", default=str(Path(reference) / "n2d2-models" / "LeNet.ini")
                        if reference else None,
                        help="N2D2's LeNet.ini [$N2Q_TEST_REFERENCE/n2d2-models/LeNet.ini]")
    args = parser.parse_args()
    if args.net in ("lenet", "all") and not args.lenet_ini:
        parser.error("--lenet-ini: give N2D2's LeNet.ini (or set N2Q_TEST_REFERENCE)")
    os.environ.setdefault("MPLBACKEND", "Agg")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="n2q-bench-") as tmp:
        work = Path(tmp)
        os.chdir(work)  # the graph drawing lands here, not in the checkout
        if args.net in ("lenet", "all"):
            if not os.environ.get("N2Q_DATA") and os.environ.get("N2Q_TEST_DATA"):
                os.environ["N2Q_DATA"] = os.environ["N2Q_TEST_DATA"]
            compare(f"LeNet ({args.lenet_ini}, MNIST)", Path(args.lenet_ini).resolve(),
                    plain_lenet(), args)
        if args.net in ("resnet18", "all"):
            stimuli = args.stimuli or 1024
            write_random_cifar(work / "data", stimuli)
            os.environ["N2Q_DATA"] = str(work / "data")
            ini = resnet_cifar_ini(work, 64)
            resnet_args = argparse.Namespace(**{**vars(args), "stimuli": stimuli})
            compare("ResNet-18 (models/ResNet-18.ini, CIFAR-10 32x32)", ini, plain_resnet18(),
                    resnet_args)
        if args.net == "resnet18-imagenet":
            stimuli = args.stimuli or 256
            write_random_cifar(work / "data", stimuli)
            os.environ["N2Q_DATA"] = str(work / "data")
            ini = resnet_cifar_ini(work, 64 if args.dev != "cpu" else 16, size=224)
            compare("ResNet-18 (models/ResNet-18.ini, 3x224x224)", ini, plain_resnet18(),
                    argparse.Namespace(**{**vars(args), "stimuli": stimuli}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
