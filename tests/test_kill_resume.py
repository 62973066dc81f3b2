"""Issue 16: SIGKILL at any moment of learning, then ``-l net_state``, ends with exactly the
weights of a run never killed.

A learning run (with a Validation partition: ``net_state/`` is the latest state, saved at every
log point beside the best one) is killed with SIGKILL (no handler runs) at a few moments: just
after the first state is complete, in the middle of a folder being saved (a ``.tmp-<pid>``
folder on disk), and late in the run. The same command with ``-l net_state`` (or without ``-l``
when no state was complete yet) must finish with the uninterrupted run's weights, bit for bit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import make_tiny_workdir, n2q, read_weights, write_net

EPOCHS = 8
SEED = 9


def learn_command(ini: str) -> list[str]:
    return [sys.executable, "-m", "n2q", ini, "-learn-epoch", str(EPOCHS), "-seed", str(SEED)]


def state_net(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "state.pt", weights_only=True)["net"]


def first_state_complete(work: Path) -> bool:
    return (work / "net_state" / "state.sha256").is_file()


def saving_now(work: Path) -> bool:
    return first_state_complete(work) and any(".tmp-" in name for name in os.listdir(work))


def late(work: Path) -> bool:
    success = work / "softmax.Target" / "Success_validation.dat"
    return success.is_file() and len(success.read_text().splitlines()) >= EPOCHS - 2


MOMENTS: dict[str, Callable[[Path], bool]] = {
    "after_first_state": first_state_complete,
    "during_a_save": saving_now,
    "late": late,
}


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_tiny_workdir(tmp_path, monkeypatch)


def kill_when(command: list[str], work: Path, moment: Callable[[Path], bool]) -> bool:
    """Run ``command`` in ``work`` and SIGKILL it as soon as ``moment(work)`` holds; True if it
    was killed (False: it finished first)."""
    process = subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            if moment(work):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.002)
        return False
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_sigkill_then_resume_is_bit_identical(tiny: Path, moment: str) -> None:
    ini = write_net(tiny)
    straight = tiny / "straight"
    straight.mkdir()
    shutil.copy(tiny / ini, straight / ini)
    os.chdir(straight)
    assert n2q(ini, "-learn-epoch", EPOCHS, "-seed", SEED) == 0

    killed = tiny / "killed"
    killed.mkdir()
    shutil.copy(tiny / ini, killed / ini)
    os.chdir(killed)
    assert kill_when(learn_command(ini), killed, MOMENTS[moment]), "finished before the kill"
    has_state = (killed / "net_state").is_dir() or any(killed.glob("net_state.old-*"))
    resume = ["-l", "net_state"] if has_state else ["-seed", SEED]
    assert n2q(ini, "-learn-epoch", EPOCHS, *resume) == 0

    assert not [p.name for p in killed.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert read_weights(killed / "weights_validation") == read_weights(
        straight / "weights_validation")
    final, reference = state_net(killed / "net_state"), state_net(straight / "net_state")
    assert final.keys() == reference.keys()
    for key in final:
        assert torch.equal(final[key], reference[key]), key
    for name in ("Success_validation.dat", "Success_learning.dat"):
        assert (killed / "softmax.Target" / name).read_text() == (
            straight / "softmax.Target" / name).read_text()
