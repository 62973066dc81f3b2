"""Helpers the test modules share (one module: no test file imports another)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from n2q.cli import main


# ------------------------------------------------------------------------------------------------
# tiny IDX data and a small Fc network, run through the command (test_train_*.py)
# ------------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_tiny_mnist(root: Path, n_train: int = 192, n_test: int = 48, size: int = 10) -> None:
    """An easy 10-class IDX data set: class c lights row c of a noisy size x size image."""
    rng = np.random.default_rng(0)
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 80, (n, size, size))
        images[np.arange(n), labels % size, :] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


NET = """
[database]
Type=MNIST_IDX_Database
Validation={validation}

[sp]
SizeX=10
SizeY=10
BatchSize=16

[fc1]
Input=sp
Type=Fc
NbOutputs=24
ActivationFunction=Rectifier
ConfigSection=common

[fc1.drop]
Input=fc1
Type=Dropout
NbOutputs=24

[fc2]
Input=fc1.drop
Type=Fc
NbOutputs=10
ActivationFunction=Linear
ConfigSection=common

[softmax]
Input=fc2
Type=Softmax
NbOutputs=10
WithLoss={with_loss}

[softmax.Target]

[common]
WeightsFiller=HeFiller
Solvers.LearningRate={lr}
Solvers.Momentum=0.9
Solvers.Decay=0.0005
Solvers.LearningRatePolicy=StepDecay
Solvers.LearningRateStepSize=[sp]_EpochSize
Solvers.LearningRateDecay=0.9
Solvers.Clamping={clamping}
"""


def make_tiny_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with tiny MNIST-like data under $N2Q_DATA; returns it."""
    write_tiny_mnist(tmp_path / "data")
    monkeypatch.setenv("N2Q_DATA", str(tmp_path / "data"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write_net(folder: Path, validation: float = 0.25, with_loss: int = 1, lr: float = 0.05,
              name: str = "tiny.ini", clamping: str = "-1.0:1.0") -> str:
    (folder / name).write_text(NET.format(validation=validation, with_loss=with_loss, lr=lr,
                                          clamping=clamping))
    return name


def n2q(*args: str) -> int:
    return main([str(a) for a in args])


def read_weights(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.syntxt"))}
