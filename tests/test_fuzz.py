"""Issue 16: a deterministic fuzz of what users hand to n2q.

Each case mutates one input of a working setup (the INI, a weights folder given with -w, or an
IDX data file) with a seeded generator and runs ``n2q NET.ini -w DIR`` in a fresh copy of the
working directory. The promise checked (README, spec/cli.md): exit 0, or exit 2 with exactly
one ``Error:`` line; never a traceback (an exception out of ``main``), and a refused run
writes nothing.
"""

from __future__ import annotations

import gzip
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from n2q.cli import main

NET = """[database]
Type=MNIST_IDX_Database
Validation=0.25

[sp]
SizeX=6
SizeY=6
BatchSize=8

[conv1]
Input=sp
Type=Conv
KernelDims=3 3
NbOutputs=4
ActivationFunction=Rectifier
ConfigSection=common

[fc1]
Input=conv1
Type=Fc
NbOutputs=10
ActivationFunction=Linear
ConfigSection=common

[softmax]
Input=fc1
Type=Softmax
NbOutputs=10
WithLoss=1

[softmax.Target]

[common]
WeightsFiller=HeFiller
Solvers.LearningRate=0.05
"""

HOSTILE_VALUES = ["", "-1", "0", "nan", "inf", "1e999", "abc", "\uff11\uff12", "$(1/0)",
                  "${UNDEFINED}", "[sp]_Nope", "99999999999999999999", "0.5", "3 3 3",
                  "[nowhere]Key", "$(", '"']
HOSTILE_NUMBERS = ["nan", "inf", "-inf", "1e999", "x", "0x10", "1,5", "", "1e-999", "--1",
                   "\u0661"]


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory (net.ini, a weights folder w/) and its data (data/mnist)."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    mnist = root / "data" / "mnist"
    mnist.mkdir(parents=True)
    for prefix, n in (("train", 32), ("t10k", 8)):
        write_idx(mnist / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 6, 6)))
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    work = root / "work"
    work.mkdir()
    (work / "net.ini").write_text(NET)
    _save_initial_weights(work)
    return root


def _save_initial_weights(work: Path) -> None:
    from n2q.config import load_config
    from n2q.io.weights import save_weights
    from n2q.net import build_network

    net = build_network(load_config(work / "net.ini"), input_shape=(1, 6, 6))
    save_weights(net, work / "w", plots=False)


def run_case(root: Path, case: str, mutate: Callable[[Path], None],
             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> int:
    """Copy the setup, mutate it, run n2q in it; check the promise; return the exit status."""
    copy = root.parent / f"{root.name}-{case}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    mutate(copy)
    work = copy / "work"
    before = {p.relative_to(work) for p in work.rglob("*")}
    monkeypatch.setenv("N2Q_DATA", str(copy / "data"))
    monkeypatch.chdir(work)
    capsys.readouterr()
    try:
        status = main(["net.ini", "-w", "w", "-seed", "1"])
    except BaseException as error:  # noqa: BLE001 (the point: nothing may escape)
        pytest.fail(f"{case}: {type(error).__name__} escaped main: {error}")
    err = capsys.readouterr().err
    assert "Traceback" not in err, case
    assert status in (0, 2), f"{case}: exit {status}\n{err}"
    if status == 2:
        errors = [line for line in err.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and err.strip().endswith(errors[0]), f"{case}:\n{err}"
        after = {p.relative_to(work) for p in work.rglob("*")}
        assert after == before, f"{case}: a refused run wrote {sorted(map(str, after - before))}"
    shutil.rmtree(copy, ignore_errors=True)
    return status


# -- mutations -----------------------------------------------------------------------------------
def mutate_ini(rng: random.Random) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / "work" / "net.ini"
        lines = path.read_text().splitlines()
        index = rng.randrange(len(lines))
        kind = rng.choice(["drop", "duplicate", "value", "byte", "truncate", "swap"])
        if kind == "drop":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "value":
            keyed = [i for i, line in enumerate(lines) if "=" in line]
            index = rng.choice(keyed)
            lines[index] = lines[index].split("=")[0] + "=" + rng.choice(HOSTILE_VALUES)
        elif kind == "swap" and index + 1 < len(lines):
            lines[index], lines[index + 1] = lines[index + 1], lines[index]
        data = ("\n".join(lines) + "\n").encode()
        if kind == "byte":
            at = rng.randrange(len(data))
            data = data[:at] + bytes([rng.randrange(256)]) + data[at:]
        elif kind == "truncate":
            data = data[:rng.randrange(len(data))]
        path.write_bytes(data)
    return apply


def mutate_weights(rng: random.Random) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        folder = root / "work" / "w"
        path = rng.choice(sorted(folder.glob("*.syntxt")))
        kind = rng.choice(["token", "token", "drop_line", "add_line", "empty", "delete",
                           "folder", "binary"])
        lines = path.read_text().splitlines()
        if kind == "token":
            row = rng.randrange(len(lines))
            tokens = lines[row].split()
            tokens[rng.randrange(len(tokens))] = rng.choice(HOSTILE_NUMBERS)
            lines[row] = " ".join(tokens)
            path.write_text("\n".join(lines) + "\n")
        elif kind == "drop_line":
            del lines[rng.randrange(len(lines))]
            path.write_text("\n".join(lines) + "\n")
        elif kind == "add_line":
            path.write_text("\n".join(lines + [lines[0]]) + "\n")
        elif kind == "empty":
            path.write_text("")
        elif kind == "delete":
            path.unlink()
        elif kind == "folder":
            path.unlink()
            path.mkdir()
        else:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(64)))
    return apply


def mutate_idx(rng: random.Random) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = rng.choice(sorted((root / "data" / "mnist").glob("*.gz")))
        packed = path.read_bytes()
        raw = gzip.decompress(packed)
        kind = rng.choice(["gz_flip", "gz_cut", "header", "raw_cut", "raw_extra", "plain",
                           "empty"])
        if kind == "gz_flip":
            data = bytearray(packed)
            for _ in range(3):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(data))
        elif kind == "gz_cut":
            path.write_bytes(packed[:rng.randrange(len(packed))])
        elif kind == "header":
            data = bytearray(raw)
            data[rng.randrange(min(len(data), 16))] = rng.randrange(256)
            path.write_bytes(gzip.compress(bytes(data)))
        elif kind == "raw_cut":
            path.write_bytes(gzip.compress(raw[:rng.randrange(len(raw))]))
        elif kind == "raw_extra":
            path.write_bytes(gzip.compress(raw + b"\x01" * rng.randrange(1, 40)))
        elif kind == "plain":
            path.write_bytes(raw)  # not compressed, named .gz
        else:
            path.write_bytes(b"")
    return apply


CASES = ([("ini", i) for i in range(14)] + [("weights", i) for i in range(14)]
         + [("idx", i) for i in range(10)])
MUTATORS = {"ini": mutate_ini, "weights": mutate_weights, "idx": mutate_idx}


def test_unmutated_setup_runs(setup: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run_case(setup, "clean", lambda root: None, monkeypatch, capsys) == 0


@pytest.mark.parametrize(("target", "seed"), CASES, ids=[f"{t}-{s}" for t, s in CASES])
def test_mutated_input_exits_0_or_2_with_one_line(
        setup: Path, target: str, seed: int, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(f"{target}-{seed}")
    run_case(setup, f"{target}-{seed}", MUTATORS[target](rng), monkeypatch, capsys)
