"""The learn / validate / test loop end to end on tiny IDX data written by the tests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_tiny_workdir, n2q, write_net

TARGET_FILES = [f"{kind}_{p}.{ext}" for kind, ext in (("Success", "dat"), ("Success", "png"))
                for p in ("learning", "validation", "test")] + [
    f"ConfusionMatrix_{p}{suffix}" for p in ("learning", "validation", "test")
    for suffix in (".dat", ".png", "_score.dat")] + [
    f"Misclassified_{p}.dat" for p in ("learning", "validation", "test")]


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_tiny_workdir(tmp_path, monkeypatch)


def test_learn_validate_test_writes_every_file(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny)
    assert n2q(ini, "-learn-epoch", 3, "-test", "-seed", 3) == 0
    out = capsys.readouterr().out
    assert "Learning database size: 144 images" in out  # 192 x 0.75
    assert "Validation database size: 48 images" in out
    assert out.count("+++ BEST validation score:") >= 1
    assert "Final recognition rate:" in out
    rate = float(out.split("Final recognition rate: ")[1].split("%")[0])
    # chance is 10%; the rows are easy to tell apart: seeds 1..6 give 87.5-100% (MSE: 87.5-100%)
    assert rate >= 70.0
    for folder in ("weights_init", "weights_validation", "net_state_validation"):
        assert (tiny / folder).is_dir(), folder
    assert (tiny / "tiny.ini.png").is_file() and (tiny / "tiny.ini.dot").is_file()
    assert (tiny / "seed.dat").read_text() == "3"
    for name in TARGET_FILES:
        assert (tiny / "softmax.Target" / name).is_file(), name
    success = (tiny / "softmax.Target/Success_learning.dat").read_text().splitlines()
    assert len(success) == 3 * 9  # 144 / 16 batches per epoch
    validation = (tiny / "softmax.Target/Success_validation.dat").read_text().split()
    assert validation[0::2] == ["9", "18", "27"]  # x = learn batches seen
    log = (tiny / "softmax.Target/labels_mapping.log.dat").read_text().splitlines()
    assert log[0].startswith("label name output nb.stimuli(Learn) nb.stimuli(Validation)")
    counts = np.array([[int(v) for v in line.split()[3:6]] for line in log[1:]])
    assert counts.sum(axis=0).tolist() == [144, 48, 48] and log[3].startswith('2 "2" 2 ')
    test_cm = np.loadtxt(tiny / "softmax.Target/ConfusionMatrix_test.dat", skiprows=1)
    assert test_cm[:, 2].sum() == 48
    assert rate == pytest.approx(100 * test_cm[test_cm[:, 0] == test_cm[:, 1], 2].sum() / 48,
                                 abs=0.01)


def test_no_validation_writes_weights_and_net_state(tiny: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny, validation=0.0)
    assert n2q(ini, "-learn-epoch", 1, "-test", "-seed", 2) == 0
    assert (tiny / "weights").is_dir() and (tiny / "net_state" / "state.pt").is_file()
    assert not (tiny / "weights_validation").exists()
    assert "BEST" not in capsys.readouterr().out


def test_mse_target_learns(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny, with_loss=0, lr=0.5)  # MSE through the softmax: small gradients
    assert n2q(ini, "-learn-epoch", 3, "-test", "-seed", 4) == 0
    out = capsys.readouterr().out
    assert float(out.split("Final recognition rate: ")[1].split("%")[0]) >= 70.0  # see above


def test_nb_test_test_index_and_bench(tiny: Path) -> None:
    ini = write_net(tiny)
    start = time.perf_counter()
    assert n2q(ini, "-learn-epoch", 2, "-seed", 1, "-bench") == 0
    wall = time.perf_counter() - start
    # one row per epoch: 192 x 0.75 = 144 Learn stimuli = 9 batches of 16 per epoch
    rows = np.loadtxt(tiny / "timings/learning.dat", ndmin=2)
    assert rows[:, :2].tolist() == [[9, 144], [18, 288]]
    # both epochs took time (compute > 0), within the command's own wall time; an epoch's
    # 144 stimuli went at least as fast as 144 over the whole command
    assert (rows[:, 3] > 0).all() and 0 < rows[:, 2:4].sum() <= wall
    assert (rows[:, 4] >= 144 / wall).all()
    assert n2q(ini, "-test", "-nb-test", 10) == 0
    cm = np.loadtxt(tiny / "softmax.Target/ConfusionMatrix_test.dat", skiprows=1)
    assert cm[:, 2].sum() == 10
    assert n2q(ini, "-test", "-test-index", 5) == 0
    cm = np.loadtxt(tiny / "softmax.Target/ConfusionMatrix_test.dat", skiprows=1)
    assert cm[:, 2].sum() == 1




def test_w_ignore_tolerates_a_missing_file_of_the_reloaded_weights(
        tiny: Path, capsys: pytest.CaptureFixture) -> None:
    """A test-only run reloads weights_validation/ strictly; -w-ignore keeps the cells whose
    file is missing at their initialization (notice) and tests anyway."""
    ini = write_net(tiny)
    assert n2q(ini, "-learn-epoch", 1, "-seed", 3) == 0
    (tiny / "weights_validation" / "fc2_weights.syntxt").unlink()
    capsys.readouterr()
    assert n2q(ini, "-test") == 2
    err = capsys.readouterr().err
    assert "no weights for fc2 (fc2_weights.syntxt missing); use -w-ignore" in err
    assert n2q(ini, "-test", "-w-ignore") == 0
    captured = capsys.readouterr()
    assert "Notice: no weights for fc2 in weights_validation, keeping its initialization" in (
        captured.err)
    assert "Final recognition rate: " in captured.out
