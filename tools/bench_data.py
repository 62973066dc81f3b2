#!/usr/bin/env python3
"""Data pipeline throughput, in stimuli per second, measured in one run.

(a) LeNet on MNIST: MNIST_IDX_Database + RescaleTransformation 28 -> 32, batches of 128, over
    the Learn partition (real MNIST from $N2Q_TEST_DATA / $N2Q_DATA when there, else generated
    digits of the same format). Goal: >= 20000 stimuli/s on 2 cores.
(b) ImageNet-style JPEG pipeline on generated JPEG files: decode, Rescale (aspect kept, shorter
    side 256), PadCrop 256, random SliceExtraction 224, random Flip, RangeAffine (/255 minus
    the mean), vs torchvision ImageFolder with the equivalent standard transforms (Resize(256),
    CenterCrop(256), RandomCrop(224), RandomHorizontalFlip, ToTensor, Normalize(mean, std=1))
    on the same files with the same number of workers. Goal: at least as fast.

    python tools/bench_data.py [--images 400] [--workers 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

LENET = """[database]
Type=MNIST_IDX_Database
Validation=0.2
[sp]
SizeX=32
SizeY=32
BatchSize=128
[sp.Transformation_1]
Type=RescaleTransformation
Width=[sp]SizeX
Height=[sp]SizeY
"""

IMAGENET = """[database]
Type=ILSVRC2012_Database
Learn=1.0
RandomPartitioning=0
DataPath={root}
LabelPath={root}/synsets.txt
[sp]
SizeX=224
SizeY=224
NbChannels=3
BatchSize=32
[sp.Transformation-1]
Type=RescaleTransformation
Width=256
Height=256
KeepAspectRatio=1
ResizeToFit=0
[sp.Transformation-2]
Type=PadCropTransformation
Width=256
Height=256
[sp.Transformation-3]
Type=ColorSpaceTransformation
ColorSpace=RGB
[sp.Transformation-4]
Type=RangeAffineTransformation
FirstOperator=Divides
FirstValue=255.0
SecondOperator=Minus
SecondValue=0.485 0.456 0.406
[sp.OnTheFlyTransformation-5]
Type=SliceExtractionTransformation
Width=224
Height=224
RandomOffsetX=1
RandomOffsetY=1
[sp.OnTheFlyTransformation-6]
Type=FlipTransformation
RandomHorizontalFlip=1
"""


def mnist_folder(tmp: Path) -> Path:
    for variable in ("N2Q_TEST_DATA", "N2Q_DATA"):
        value = os.environ.get(variable)
        if value and (Path(value) / "mnist" / "train-images-idx3-ubyte.gz").exists():
            return Path(value)
    # generated digits (60000 train, like full MNIST) in the IDX format
    rng = np.random.default_rng(0)
    folder = tmp / "mnist"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr, magic in (("images-idx3", images, 3), ("labels-idx1", labels, 1)):
            head = struct.pack(">BBBB", 0, 0, 8, magic) + b"".join(
                struct.pack(">I", d) for d in arr.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(
                head + arr.tobytes(), compresslevel=1))
    return tmp


def bench_lenet(tmp: Path, epochs: int) -> None:
    from n2q.config import load_config
    from n2q.data import make_provider

    root = mnist_folder(tmp)
    os.environ["N2Q_DATA"] = str(root)
    ini = tmp / "lenet.ini"
    ini.write_text(LENET)
    start = time.perf_counter()
    sp = make_provider(load_config(ini), seed=1)
    build = time.perf_counter() - start
    n_learn = sp.partition_sizes()["Learn"]
    rates = []
    for epoch in range(epochs):
        start = time.perf_counter()
        n = sum(len(y) for _, y in sp.loader("Learn", shuffle=True, epoch=epoch))
        rates.append(n / (time.perf_counter() - start))
    print(f"(a) LeNet MNIST pipeline ({n_learn} Learn stimuli, data from {root}):")
    print(f"    provider build (read + partition): {build:.2f} s")
    print(f"    epoch 0 (incl. the one-time batched Rescale): {rates[0]:,.0f} stimuli/s")
    print(f"    later epochs: {np.median(rates[1:]):,.0f} stimuli/s   (goal >= 20,000)")
    start = time.process_time()
    n = sum(len(y) for _, y in sp.loader("Learn", shuffle=True, epoch=epochs))
    print(f"    CPU time per stimulus (load-independent): "
          f"{(time.process_time() - start) / n * 1e6:.2f} us")


def make_jpegs(root: Path, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    wnids = [f"n{i:08d}" for i in range(4)]
    (root / "synsets.txt").write_text("".join(f"{w} class\n" for w in wnids))
    for i in range(count):
        w, h = int(rng.integers(400, 520)), int(rng.integers(320, 420))
        # smooth colour gradients + noise: compresses like a photo, not like flat colour
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h))], -1)
        img = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        folder = root / "train" / wnids[i % len(wnids)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"img_{i:05d}.JPEG", quality=90)


def bench_jpeg(tmp: Path, count: int, workers: int, epochs: int) -> None:
    import torch
    import torchvision
    from torchvision import transforms as T

    from n2q.config import load_config
    from n2q.data import make_provider
    from n2q.data.provider import _worker_init

    root = tmp / "imagenet"
    root.mkdir()
    make_jpegs(root, count)
    ini = tmp / "imagenet.ini"
    ini.write_text(IMAGENET.format(root=root))
    sp = make_provider(load_config(ini), seed=1)

    def n2q_epoch(epoch: int) -> int:
        return sum(len(y) for _, y in sp.loader("Learn", shuffle=True, epoch=epoch,
                                                 num_workers=workers))

    standard = T.Compose([T.Resize(256), T.CenterCrop(256), T.RandomCrop(224),
                          T.RandomHorizontalFlip(), T.ToTensor(),
                          T.Normalize([0.485, 0.456, 0.406], [1.0, 1.0, 1.0])])
    folder = torchvision.datasets.ImageFolder(str(root / "train"), transform=standard)
    loader = torch.utils.data.DataLoader(folder, batch_size=32, shuffle=True,
                                         num_workers=workers)

    def tv_epoch(epoch: int) -> int:
        return sum(len(y) for _, y in loader)

    # epochs of the two pipelines alternate, so that a change in the machine's load (shared
    # machines) weighs on both alike
    rates: dict[str, list[float]] = {"n2q": [], "torchvision ImageFolder": []}
    for epoch in range(epochs):
        for name, run in (("n2q", n2q_epoch), ("torchvision ImageFolder", tv_epoch)):
            start = time.perf_counter()
            n = run(epoch)
            rates[name].append(n / (time.perf_counter() - start))
    results = {name: float(np.median(r)) for name, r in rates.items()}
    print(f"(b) ImageNet-style JPEG pipeline ({count} JPEGs ~460x370, {workers} workers, "
          f"median of {epochs} alternating epochs):")
    for name, rate in results.items():
        print(f"    {name:24s} {rate:8.1f} stimuli/s")
    ratio = results["n2q"] / results["torchvision ImageFolder"]
    print(f"    ratio n2q / torchvision: {ratio:.2f}   (goal >= 1)")
    # CPU time of one stimulus in this process, one thread, with the worker processes' malloc
    # settings (for both): what a worker spends, whatever the load of the machine
    torch.set_num_threads(1)
    _worker_init(0)
    ids = sp.partition_ids("Learn")
    n = min(len(ids), 100)
    cpu = {}
    for name, one in (("n2q", lambda i: sp.stimulus("Learn", int(ids[i]), 0)),
                      ("torchvision ImageFolder", lambda i: folder[i])):
        one(0)
        start = time.process_time()
        for i in range(n):
            one(i)
        cpu[name] = (time.process_time() - start) / n * 1000
    print("    CPU ms per stimulus (1 thread): " + ", ".join(
        f"{name} {ms:.2f}" for name, ms in cpu.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"torch threads: {torch.get_num_threads()}, CPUs: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_lenet(Path(tmp), max(2, args.epochs))
        bench_jpeg(Path(tmp), args.images, args.workers, args.epochs)


if __name__ == "__main__":
    main()
