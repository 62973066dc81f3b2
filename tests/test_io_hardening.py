"""Issue 16, io side: damaged weights folders and saved states are refused in one line that
says what to do; folders left by a kill are restored or removed (and the user told), never
read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from n2q.errors import UserError
from n2q.io.atomic import atomic_folder, recover_interrupted
from n2q.io.seedfile import SEED_LIMIT, parse_seed, read_seed_file
from n2q.io.state import load_state, save_state
from n2q.io.weights import load_weights, save_weights
from n2q.net.conv import ConvCell


class TinyNet(nn.Module):
    def __init__(self, *cells: nn.Module) -> None:
        super().__init__()
        self.cells = nn.ModuleDict({cell.name: cell for cell in cells})
        self.inputs = {cell.name: list(cell.inputs) for cell in cells}


def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(ConvCell("conv1", ["sp"], (1, 4, 4), 2, (2, 2)))


def dead_pid() -> int:
    """The pid of a process that has exited (a run killed with -9)."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


# -- weights folders -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1e999", "NaN"])
def test_non_finite_weight_is_refused_at_its_line(tmp_path: Path, bad: str) -> None:
    save_weights(net(), tmp_path / "w", plots=False)
    path = tmp_path / "w" / "conv1_weights.syntxt"
    lines = path.read_text().splitlines()
    values = lines[1].split()
    values[2] = bad
    lines[1] = " ".join(values)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"^{path}:2: .*'{bad}' is not a finite number"):
        load_weights(net(), tmp_path / "w")


def test_a_file_of_only_nan_is_refused(tmp_path: Path) -> None:
    save_weights(net(), tmp_path / "w", plots=False)
    path = tmp_path / "w" / "conv1_biases.syntxt"
    path.write_text("nan\nnan\n")
    with pytest.raises(UserError, match=rf"^{path}:1: .*not a finite number"):
        load_weights(net(), tmp_path / "w")


def test_weights_file_that_is_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "conv1_weights.syntxt").mkdir()
    with pytest.raises(UserError, match=rf"^{folder / 'conv1_weights.syntxt'}: .*folder"):
        load_weights(net(), folder)


def test_weights_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "w").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        load_weights(net(), tmp_path / "w")


# -- saved states --------------------------------------------------------------------------------
def _saved(tmp_path: Path) -> Path:
    model = net()
    return save_state(tmp_path / "net_state", net=model, epoch=3)


def _one_line_naming(folder: Path, error: pytest.ExceptionInfo[UserError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert str(folder) in message
    assert "weights_only" not in message and "miniz" not in message
    assert "rerun without -l" in message  # what to do
    return message


def test_state_with_flipped_bytes_is_refused(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    path = folder / "state.pt"
    data = bytearray(path.read_bytes())
    # flip one byte inside the stored tensor data (the zip directory stays valid)
    middle = len(data) // 2
    data[middle] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UserError) as caught:
        load_state(folder, net=net())
    assert "damaged" in _one_line_naming(folder, caught)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x80\x02}q\x00."])
def test_empty_or_corrupted_state_is_one_line(tmp_path: Path, content: bytes) -> None:
    folder = _saved(tmp_path)
    (folder / "state.pt").write_bytes(content)
    with pytest.raises(UserError) as caught:
        load_state(folder, net=net())
    _one_line_naming(folder, caught)


def test_state_without_checksum_is_refused(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    for path in folder.iterdir():
        if path.name != "state.pt":
            path.unlink()
    with pytest.raises(UserError) as caught:
        load_state(folder, net=net())
    assert "checksum" in _one_line_naming(folder, caught)


def test_intact_state_still_loads(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    assert load_state(folder, net=net(), restore_rng=False)["epoch"] == 3


# -- leftovers of killed runs --------------------------------------------------------------------
def test_old_leftover_is_restored_when_the_folder_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """kill -9 between the two renames of a replacement: X is gone, X.old-<pid> holds the
    previous complete version (and X.tmp-<pid> the new one, maybe): X comes back."""
    folder = _saved(tmp_path)
    pid = dead_pid()
    folder.rename(tmp_path / f"net_state.old-{pid}")
    (tmp_path / f"net_state.tmp-{pid}").mkdir()
    (tmp_path / f"net_state.tmp-{pid}" / "state.pt").write_bytes(b"half")
    recover_interrupted(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net_state"]
    assert load_state(folder, net=net(), restore_rng=False)["epoch"] == 3
    err = capsys.readouterr().err
    assert f"restored {folder} from net_state.old-{pid}" in err
    assert f"removed {tmp_path / f'net_state.tmp-{pid}'}" in err


def test_old_leftover_beside_a_complete_folder_is_removed(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    pid = dead_pid()
    (tmp_path / f"net_state.old-{pid}").mkdir()
    recover_interrupted(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net_state"]
    assert load_state(folder, net=net(), restore_rng=False)["epoch"] == 3


def test_leftovers_of_live_processes_are_kept(tmp_path: Path) -> None:
    (tmp_path / f"w.tmp-{os.getppid()}").mkdir()  # another run writing now
    (tmp_path / "w.old-1").mkdir()
    recover_interrupted(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.old-1", f"w.tmp-{os.getppid()}"]


def test_a_save_restores_instead_of_deleting_the_previous_version(tmp_path: Path) -> None:
    """atomic_folder of X with only X.old-<dead pid> on disk: the old one is the last complete
    version; it must not be deleted before the new one is in place."""
    folder = tmp_path / "w"
    pid = dead_pid()
    (tmp_path / f"w.old-{pid}").mkdir()
    (tmp_path / f"w.old-{pid}" / "kept.txt").write_text("previous")

    class Stop(Exception):
        pass

    with pytest.raises(Stop), atomic_folder(folder) as tmp:
        (tmp / "new.txt").write_text("new")
        raise Stop
    assert (folder / "kept.txt").read_text() == "previous"


def test_half_written_folders_are_never_read(tmp_path: Path) -> None:
    save_weights(net(), tmp_path / f"w.tmp-{dead_pid()}", plots=False)
    tmp = next(tmp_path.glob("w.tmp-*"))
    with pytest.raises(UserError, match="half-written"):
        load_weights(net(), tmp)
    with pytest.raises(UserError, match="half-written"):
        load_state(tmp)


# -- seeds ---------------------------------------------------------------------------------------
def test_seed_bounds(tmp_path: Path) -> None:
    assert parse_seed(str(SEED_LIMIT - 1), "-seed") == SEED_LIMIT - 1
    for text in (str(SEED_LIMIT), "1" * 40, "-3", "１２", "1_000", " 7", "0x10", ""):
        with pytest.raises(UserError, match="-seed"):
            parse_seed(text, "-seed")
    path = tmp_path / "seed.dat"
    path.write_text("18446744073709551616\n")
    with pytest.raises(UserError, match=rf"^{path}:1: .*2\^64"):
        read_seed_file(path)
    path.write_text("42\n")
    assert read_seed_file(path) == 42
    path.unlink()
    path.mkdir()
    with pytest.raises(UserError, match=rf"^{path}: .*folder"):
        read_seed_file(path)


# -- network files -------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"hello\n", b"\x08\x07", bytes(range(256))])
def test_a_file_that_is_not_onnx_says_so(tmp_path: Path, content: bytes) -> None:
    from n2q.net.onnx_graph import GraphError, read_model

    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(GraphError) as caught:
        read_model(path)
    message = str(caught.value)
    assert "is not an ONNX model" in message and "opset" not in message
