"""Exact resume (-l), -learn N with replacement, the seed read back by test-only runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_tiny_workdir, n2q, read_weights, write_net


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory of test_train_loop.py (tiny IDX data under $N2Q_DATA)."""
    return make_tiny_workdir(tmp_path, monkeypatch)


def test_resume_is_exact(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    """Stopped after 1 epoch and resumed with -l = never stopped (dropout, momentum, decay)."""
    ini = write_net(tiny, validation=0.0)
    straight = tiny / "straight"
    resumed = tiny / "resumed"
    for folder in (straight, resumed):
        folder.mkdir()
        (folder / ini).write_text((tiny / ini).read_text())
    import os

    os.chdir(straight)
    assert n2q(ini, "-learn-epoch", 3, "-seed", 7) == 0
    os.chdir(resumed)
    assert n2q(ini, "-learn-epoch", 1, "-seed", 7) == 0
    first = read_weights(resumed / "weights")
    assert n2q(ini, "-learn-epoch", 3, "-l", "net_state") == 0
    assert "Resuming after 1 epoch(s)" in capsys.readouterr().out
    final = read_weights(resumed / "weights")
    assert final == read_weights(straight / "weights")
    assert final != first  # it did learn after resuming
    for name in ("Success_learning.dat", "ConfusionMatrix_learning.dat"):
        assert (resumed / "softmax.Target" / name).read_text() == (
            straight / "softmax.Target" / name).read_text()


def test_learn_stimuli_with_replacement_and_log(tiny: Path) -> None:
    ini = write_net(tiny)
    assert n2q(ini, "-learn", 100, "-log", 40, "-seed", 1) == 0
    # -log 40 is rounded up to whole batches: 48 stimuli (3 batches) per log point
    xs = (tiny / "softmax.Target/Success_validation.dat").read_text().split()[0::2]
    assert xs == ["3", "6", "7"]  # 48 + 48 + 4 stimuli -> batches 3, 6, 7
    assert len((tiny / "softmax.Target/Success_learning.dat").read_text().splitlines()) == 7


def test_test_only_reads_the_seed_back(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny)
    assert n2q(ini, "-learn-epoch", 1) == 0  # seed 0: time based
    seed = (tiny / "seed.dat").read_text()
    assert int(seed) > 0
    capsys.readouterr()
    assert n2q(ini, "-test") == 0
    out = capsys.readouterr().out
    assert "Importing weights from directory 'weights_validation'" in out
    assert (tiny / "seed.dat").read_text() == seed


def test_resume_keeps_the_metric_of_the_state(tiny: Path, capsys: pytest.CaptureFixture) -> None:
    """The saved best score is a Precision: the resumed run compares Precisions."""
    ini = write_net(tiny)
    assert n2q(ini, "-learn-epoch", 1, "-seed", 4, "-valid-metric", "Precision") == 0
    capsys.readouterr()
    assert n2q(ini, "-learn-epoch", 2, "-l", "net_state_validation",
               "-valid-metric", "Accuracy") == 2
    assert capsys.readouterr().err.strip() == (
        "Error: -valid-metric Accuracy: the state net_state_validation picks its best model "
        "by Precision; resume with -valid-metric Precision")
    assert n2q(ini, "-learn-epoch", 2, "-l", "net_state_validation") == 0
    captured = capsys.readouterr()
    assert ("Notice: -l net_state_validation: validating with Precision, the metric of the "
            "saved state") in captured.err
    scores = [line for line in captured.out.splitlines() if "validation score: " in line]
    assert len(scores) == 1 and "[Precision]" in scores[0]
    lines = (tiny / "softmax.Target/Success_validation.dat").read_text().splitlines()
    assert len(lines) == 2


def test_resume_into_another_network_is_a_user_error(tiny: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    ini = write_net(tiny, validation=0.0)
    assert n2q(ini, "-learn-epoch", 1, "-seed", 3) == 0
    (tiny / ini).write_text((tiny / ini).read_text().replace("NbOutputs=24", "NbOutputs=30"))
    capsys.readouterr()
    assert n2q(ini, "-learn-epoch", 2, "-l", "net_state") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: -l net_state: the saved network state does not match")
    assert "\n" not in err


def test_ctrl_c_leaves_complete_folders_and_resumes(tiny: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    """SIGINT in the middle of learning: exit 130, no half-written folder, -l resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ini = write_net(tiny, validation=0.0)
    command = [sys.executable, "-m", "n2q", ini, "-learn-epoch", "400", "-seed", "2"]
    # SIGINT default in the child: a shell without job control starts background jobs with
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    process = subprocess.Popen(command, cwd=tiny, env=dict(os.environ), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (tiny / "net_state" / "state.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # somewhere in a later epoch, possibly while saving
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err[-2000:]
    assert "Interrupted" in err and "Traceback" not in err
    leftovers = [p.name for p in tiny.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []
    assert {p.name for p in (tiny / "weights").iterdir()} >= {"fc1_weights.syntxt",
                                                               "fc2_weights.syntxt"}
    from n2q.io.state import load_state

    done = int(load_state(tiny / "net_state", restore_rng=False)["progress"]["epoch"])
    assert 1 <= done < 400
    assert n2q(ini, "-learn-epoch", done + 1, "-l", "net_state") == 0
    assert f"Resuming after {done} epoch(s)" in capsys.readouterr().out
