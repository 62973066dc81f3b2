"""N2D2's own model files, unmodified, through the real command.

- LeNet.ini on the real MNIST (8000 train / 2000 test): ``n2q LeNet.ini -learn-epoch 10 -test``
  over three seeds must learn as well as N2D2's own runs (mean test rate) and write every file
  of a run (spec/cli.md).
- cifar-10.ini learns one epoch on tiny CIFAR-10 binary files written by the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MODELS = Path(__file__).resolve().parent.parent / "models"

FINAL = re.compile(
    r"Final recognition rate: (\d+(?:\.\d+)?)%    \(error rate: (\d+(?:\.\d+)?)%\)\n"
    r"    Sensitivity: [\d.]+% / Specificity: [\d.]+% / Precision: [\d.]+%\n"
    r"    Accuracy: [\d.]+% / F1-score: [\d.]+% / Informedness: [\d.]+%\n")


def n2q(args: list[str], cwd: Path, data: Path, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, N2Q_DATA=str(data), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "n2q", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# N2D2's own runs of LeNet.ini on this data (10 epochs, 2000 test digits): 97.25% (seed 1,
# n2d2-run-LeNet/README.md), 97.75%, 97.60% (issue 10)
N2D2_RATES = (97.25, 97.75, 97.60)
# One run's rate spreads with the seed: n2q's sd is ~0.35 points (seeds 1..10 on this CPU:
# 96.95 97.35 97.75 98.05 97.6 97.35 97.7 97.2 97.75 97.5), N2D2's three ~0.25. The mean of
# three runs then has an sd of ~0.2 and the difference of the two means ~0.25 points: n2q's
# mean over seeds 1, 2, 3 must be within 3 sd (0.75 points) of N2D2's, or above it.
SEEDS = (1, 2, 3)
MARGIN = 0.75


def learn_lenet(reference: Path, test_data: Path, folder: Path, seed: int) -> tuple[str, float]:
    """``n2q LeNet.ini -learn-epoch 10 -test -seed S`` in ``folder``: (stdout, test rate)."""
    folder.mkdir()
    shutil.copy(reference / "n2d2-models" / "LeNet.ini", folder / "LeNet.ini")
    result = n2q(["LeNet.ini", "-learn-epoch", "10", "-test", "-seed", str(seed)], folder,
                 test_data, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    match = FINAL.search(result.stdout)
    assert match, result.stdout[-2000:]
    return result.stdout, float(match.group(1))


@pytest.mark.slow
def test_lenet_learns_as_well_as_n2d2_and_writes_every_file(reference: Path, test_data: Path,
                                                             tmp_path: Path) -> None:
    runs = [learn_lenet(reference, test_data, tmp_path / f"seed{s}", s) for s in SEEDS]
    rates = [rate for _, rate in runs]
    assert sum(rates) / len(rates) >= sum(N2D2_RATES) / len(N2D2_RATES) - MARGIN, rates
    out, rate = runs[0]
    tmp_path = tmp_path / f"seed{SEEDS[0]}"
    assert "Learning database size: 6400 images" in out
    assert "Validation database size: 1600 images" in out
    assert "Testing database size: 2000 images" in out
    assert "Learning rate after 50(x128) iteration(s): 0.04965" in out  # N2D2's schedule
    for folder in ("weights_init", "weights_validation"):
        names = {p.name for p in (tmp_path / folder).iterdir()}
        assert {f"{c}_weights.syntxt" for c in ("conv1", "conv2", "conv3", "fc1", "fc2")} <= names
    assert (tmp_path / "net_state_validation" / "state.pt").is_file()
    assert (tmp_path / "LeNet.ini.png").is_file() and (tmp_path / "LeNet.ini.dot").is_file()
    assert (tmp_path / "seed.dat").read_text() == str(SEEDS[0])
    target = tmp_path / "softmax.Target"
    reference_files = {p.name for p in (reference / "n2d2-run-LeNet/softmax.Target").iterdir()
                       if p.name.startswith(("Success", "ConfusionMatrix", "Misclassified"))}
    ours = {p.name for p in target.iterdir()}
    assert reference_files <= ours, reference_files - ours
    for partition in ("learning", "validation", "test"):
        assert f"Success_{partition}.png" in ours and f"ConfusionMatrix_{partition}.png" in ours
    assert len((target / "Success_learning.dat").read_text().splitlines()) == 500  # 10 x 50
    ours_log = (target / "labels_mapping.log.dat").read_text().splitlines()
    theirs_log = (reference / "n2d2-run-LeNet/softmax.Target/labels_mapping.log.dat"
                  ).read_text().splitlines()
    assert ours_log[0] == theirs_log[0] and len(ours_log) == len(theirs_log)
    xs = [line.split()[0] for line in (target / "Success_validation.dat").read_text().split("\n")
          if line]
    assert xs == [str(50 * k) for k in range(1, 11)]
    # the test confusion matrix holds the 2000 digits and agrees with the printed rate
    cm = np.loadtxt(target / "ConfusionMatrix_test.dat", skiprows=1)
    assert cm[:, 2].sum() == 2000
    assert 100 * cm[cm[:, 0] == cm[:, 1], 2].sum() / 2000 == pytest.approx(rate, abs=0.01)
    misclassified = (target / "Misclassified_test.dat").read_text().splitlines()
    assert misclassified[0] == "# name target estimated count"
    assert len(misclassified) - 1 == round(2000 * (100 - rate) / 100)


def write_tiny_cifar(root: Path, per_file: int = 24, n_test: int = 32) -> None:
    """CIFAR-10 binary version: 1 label byte + 3072 bytes (R, G, B planes of 32x32); class c
    lights row 3c of every plane of a noisy image (learnable)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}.bin", per_file) for i in range(1, 6)] + [
            ("test_batch.bin", n_test)]:
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 80, (n, 3, 32, 32))
        images[np.arange(n), :, 3 * labels, :] = 255
        records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
        (folder / name).write_bytes(records.astype(np.uint8).tobytes())


def read_weights(folder: Path, name: str) -> np.ndarray:
    return np.array((folder / name).read_text().split(), dtype=np.float32)


def test_zoo_lenet_learns_the_easy_digits(tmp_path: Path) -> None:
    """models/LeNet.ini (BatchNorm, clamped SAT weights) through the command, on tiny
    28x28 digits whose class is a lit row: 3 epochs of 2 batches lift the test rate from
    chance (10%) to above 40%."""
    from helpers import write_tiny_mnist

    write_tiny_mnist(tmp_path / "data", n_train=640, n_test=100, size=28)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(MODELS / "LeNet.ini", work / "LeNet.ini")
    result = n2q(["LeNet.ini", "-learn-epoch", "3", "-test", "-seed", "1"], work,
                 tmp_path / "data", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Learning database size: 512 images" in result.stdout  # 640 x 0.8
    scores = [float(v) for v in re.findall(r"(?:BEST|LOWER) validation score: ([\d.]+)%",
                                           result.stdout)]
    assert len(scores) == 3 and scores[-1] > scores[0]
    match = FINAL.search(result.stdout)
    assert match and float(match.group(1)) > 40.0, result.stdout[-2000:]


def test_zoo_cifar10_learns_one_epoch(tmp_path: Path) -> None:
    """models/cifar-10.ini (normalization from the Learn statistics, pad/crop/flip, BatchNorm,
    CosineDecay) learns one epoch of 3 batches on tiny CIFAR-10 binary files."""
    write_tiny_cifar(tmp_path / "data", per_file=64, n_test=32)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(MODELS / "cifar-10.ini", work / "cifar-10.ini")
    result = n2q(["cifar-10.ini", "-learn-epoch", "1", "-test", "-seed", "1"], work,
                 tmp_path / "data", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Learning database size: 288 images" in result.stdout  # 320 x (1 - 0.1)
    # CosineDecay with StepSize 1 stimulus changes the rate at every update: not logged
    assert "Learning rate after" not in result.stdout
    assert FINAL.search(result.stdout)
    lines = (work / "softmax.Target" / "Success_learning.dat").read_text().splitlines()
    assert len(lines) == 3  # 288 stimuli = 2 batches of 128 + 1 of 32
    # the weights learned: the best-validation folder differs from the initial one
    name = "conv1.1_weights.syntxt"
    assert not np.array_equal(read_weights(work / "weights_init", name),
                              read_weights(work / "weights_validation", name))


def test_cifar10_ini_learns_one_epoch(reference: Path, tmp_path: Path) -> None:
    write_tiny_cifar(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(reference / "n2d2-models" / "cifar-10.ini", work / "cifar-10.ini")
    result = n2q(["cifar-10.ini", "-learn-epoch", "1", "-test", "-seed", "2"], work,
                 tmp_path / "data", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Learning database size: 108 images" in result.stdout  # 120 x (1 - 0.1)
    assert "Validation database size: 12 images" in result.stdout
    assert FINAL.search(result.stdout)
    assert (work / "weights_validation" / "conv1.1_weights.syntxt").is_file()
    assert (work / "weights_validation" / "bn1.1_scales.syntxt").is_file()
    lines = (work / "softmax.Target" / "Success_learning.dat").read_text().splitlines()
    assert len(lines) == 2  # 108 stimuli = 2 batches of 64
