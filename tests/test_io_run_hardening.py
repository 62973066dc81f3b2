"""Issue 16, what a run writes: every input and output path is checked before the first file is
written, the latest full state is kept beside the best one, interruptions are recoverable and
say what to do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import make_tiny_workdir, n2q, read_weights, write_net


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_tiny_workdir(tmp_path, monkeypatch)


def listing(folder: Path) -> dict[str, bool]:
    return {str(p.relative_to(folder)): p.is_dir() for p in folder.rglob("*")}


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run n2q; it must exit 2 with one Error line; return that line."""
    capsys.readouterr()
    assert n2q(*args) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, captured.err
    assert "Learn 32/32" not in captured.err + captured.out  # refused before learning
    return errors[0]


# -- output paths taken by something of the wrong kind -------------------------------------------
@pytest.mark.parametrize(("path", "make_dir", "args"), [
    ("seed.dat", True, ()),
    ("softmax.Target", False, ()),
    ("tiny.ini.png", True, ()),
    ("tiny.ini.dot", True, ()),
    ("weights_init", False, ()),
    ("weights_validation", False, ()),
    ("net_state_validation", False, ()),
    ("net_state", False, ()),
    ("weights_quantized", False, ("-test", "-qat-sat")),
    ("export_ONNX", False, ("-export", "ONNX")),
], ids=lambda v: str(v))
def test_output_paths_are_checked_before_anything_is_written(
        tiny: Path, capsys: pytest.CaptureFixture[str], path: str, make_dir: bool,
        args: tuple[str, ...]) -> None:
    ini = write_net(tiny)
    if path == "weights_quantized":  # a network -qat-sat can fuse: SAT weights and activations
        text = (tiny / ini).read_text().replace(
            "ConfigSection=common", "ConfigSection=common\nQWeight=SAT\nQWeight.Range=15\n"
            "QWeight.ApplyQuantization=1", 1)
        (tiny / ini).write_text(text)
    if make_dir:
        (tiny / path).mkdir()
    else:
        (tiny / path).write_text("taken")
    before = listing(tiny)
    line = refused(capsys, ini, "-learn", "32", "-seed", "1", *args)
    assert path in line, line
    assert listing(tiny) == before


def test_empty_learn_partition_is_refused_before_writing(
        tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny, validation=1.0)
    before = listing(tiny)
    assert "Learn partition is empty" in refused(capsys, ini, "-learn", "32", "-seed", "1")
    assert listing(tiny) == before


def test_data_of_another_size_than_sp_is_refused_before_writing(
        tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny)
    (tiny / ini).write_text((tiny / ini).read_text().replace("SizeX=10", "SizeX=12"))
    before = listing(tiny)
    line = refused(capsys, ini, "-learn", "32", "-seed", "1", "-test")
    assert "10" in line and "12" in line, line
    assert listing(tiny) == before


def test_qat_sat_without_sat_is_refused_before_learning(
        tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny)
    before = listing(tiny)
    line = refused(capsys, ini, "-learn", "32", "-test", "-qat-sat", "-seed", "1")
    assert "nothing to fuse" in line and "tiny.ini:" in line, line
    assert listing(tiny) == before


def test_seed_file_past_64_bits_is_refused(tiny: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny)
    (tiny / "seed.dat").write_text("18446744073709551616")
    assert "seed.dat:1: " in refused(capsys, ini, "-test")


def test_dev_null_as_network_file(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "/dev/null", "-test")
    assert "/dev/null" in line and "no such" not in line and "not a file" in line


# -- the latest state beside the best one --------------------------------------------------------
def state_tensors(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "state.pt", weights_only=True)["net"]


def test_latest_state_is_kept_and_resumes_bit_identically(
        tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny)
    straight, resumed = tiny / "straight", tiny / "resumed"
    for folder in (straight, resumed):
        folder.mkdir()
        (folder / ini).write_text((tiny / ini).read_text())
    os.chdir(straight)
    assert n2q(ini, "-learn-epoch", 3, "-seed", 5) == 0
    os.chdir(resumed)
    assert n2q(ini, "-learn-epoch", 2, "-seed", 5) == 0
    assert (resumed / "net_state").is_dir() and (resumed / "net_state_validation").is_dir()
    assert n2q(ini, "-learn-epoch", 3, "-l", "net_state") == 0
    assert "Resuming after 2 epoch(s)" in capsys.readouterr().out
    latest, reference = state_tensors(resumed / "net_state"), state_tensors(straight / "net_state")
    assert latest.keys() == reference.keys()
    for key in latest:
        assert torch.equal(latest[key], reference[key]), key
    assert read_weights(resumed / "weights_validation") == read_weights(
        straight / "weights_validation")
    for name in ("Success_validation.dat", "Success_learning.dat"):
        assert (resumed / "softmax.Target" / name).read_text() == (
            straight / "softmax.Target" / name).read_text()


def test_resumed_state_past_the_request_tests_its_own_weights(
        tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny)
    assert n2q(ini, "-learn", 48, "-log", 16, "-seed", 3) == 0
    other = tiny / "other"
    other.mkdir()
    (other / ini).write_text((tiny / ini).read_text())
    os.rename(tiny / "net_state", other / "state")
    os.chdir(other)
    capsys.readouterr()
    assert n2q(ini, "-l", "state", "-learn", 12, "-test") == 0
    captured = capsys.readouterr()
    assert "weights_validation" not in captured.err
    assert "Final recognition rate" in captured.out


# -- interruptions -------------------------------------------------------------------------------
def test_interrupted_replacement_is_restored_at_start(
        tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny, validation=0.0)
    assert n2q(ini, "-learn-epoch", 1, "-seed", 2) == 0
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    os.rename(tiny / "net_state", tiny / f"net_state.old-{dead}")  # killed between renames
    (tiny / f"weights.tmp-{dead}").mkdir()  # killed during a save
    capsys.readouterr()
    assert n2q(ini, "-learn-epoch", 2, "-l", "net_state") == 0
    err = capsys.readouterr().err
    assert f"restored net_state from net_state.old-{dead}" in err
    assert f"removed weights.tmp-{dead}" in err
    assert not list(tiny.glob("*.old-*")) and not list(tiny.glob("*.tmp-*"))


def test_ctrl_c_before_any_state_says_to_rerun_without_l(
        tiny: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import n2q.run as run_module

    def interrupted(options: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "run", interrupted)
    assert n2q(write_net(tiny), "-learn", 32) == 130
    err = capsys.readouterr().err
    assert "rerun the command without -l" in err and "-l net_state" not in err


def test_ctrl_c_after_a_save_names_the_latest_state(
        tiny: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import n2q.run as run_module
    from n2q.io.state import save_state

    def interrupted(options: object) -> None:
        save_state(Path("net_state"), epoch=1)
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "run", interrupted)
    assert n2q(write_net(tiny), "-learn", 32) == 130
    assert "resume with -l net_state" in capsys.readouterr().err


def test_ctrl_c_while_exiting_is_quiet(tmp_path: Path) -> None:
    """A thread still running at exit makes Python wait in threading's shutdown; Ctrl-C
    there must end the process quietly with 130, not print a traceback."""
    script = ("import runpy, sys, threading, time\n"
              "threading.Thread(target=time.sleep, args=(20,)).start()\n"
              "sys.argv = ['n2q', '--version']\n"
              "runpy.run_module('n2q', run_name='__main__')\n")
    process = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(3.0)  # n2q --version printed, the interpreter waits for the thread
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert out.startswith("n2q ")
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_network_too_large_for_memory_is_one_line(
        tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ini = write_net(tiny)
    text = (tiny / ini).read_text()
    (tiny / ini).write_text(text.replace("NbOutputs=24", "NbOutputs=2147483647"))
    before = listing(tiny)
    line = refused(capsys, ini, "-test")
    assert "memory" in line and "fc1" in line, line
    assert listing(tiny) == before
