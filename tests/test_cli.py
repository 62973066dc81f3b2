"""The command line: N2D2-style options, errors as one line with exit 2, help, version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from n2q import cli
from n2q.cli import help_text, parse_args
from n2q.errors import UserError
from n2q.options import METRIC_NAMES, OPTION_SPECS, Options, describe


def test_every_option_reaches_its_field() -> None:
    o = parse_args(["net.ini", "-learn-epoch", "10", "-log-epoch", "2", "-report", "50",
                    "-valid-metric", "Precision", "-test", "-w", "w_dir", "-w-ignore",
                    "-seed", "4", "-dev", "cuda:1", "-fuse", "-bench", "-nb-test", "7",
                    "-qat-sat", "--debug"])
    assert (o.network, o.learn_epoch, o.log_epoch, o.report, o.valid_metric) == (
        "net.ini", 10, 2, 50, "Precision")
    assert (o.test, o.w, o.w_ignore, o.seed, o.dev, o.fuse, o.bench) == (
        True, "w_dir", True, 4, "cuda:1", True, True)
    assert (o.nb_test, o.test_index, o.qat_sat, o.debug) == (7, -1, True, True)
    assert parse_args(["n.ini", "-test", "-test-index", "3"]).test_index == 3
    assert parse_args(["n.ini", "-find-lr", "100"]).find_lr == 100
    o = parse_args(["-learn=5000", "-log=100", "-l", "net_state", "-export", "ONNX", "n.ini"])
    assert (o.learn, o.log, o.l, o.export, o.network) == (5000, 100, "net_state", "ONNX", "n.ini")


def test_defaults_are_the_spec_ones() -> None:
    o = parse_args(["net.ini"])
    assert (o.learn, o.learn_epoch, o.log, o.log_epoch, o.report) == (0, 0, 1000, 1, 100)
    assert (o.valid_metric, o.seed, o.dev, o.test, o.w, o.l) == (
        "Sensitivity", 0, "0", False, None, None)


@pytest.mark.parametrize("metric", METRIC_NAMES)
def test_all_13_metrics(metric: str) -> None:
    assert parse_args(["n.ini", "-valid-metric", metric]).valid_metric == metric


@pytest.mark.parametrize("dev, want", [("0", "0"), ("2", "2"), ("cpu", "cpu"), ("CPU", "cpu"),
                                       ("cuda:1", "cuda:1"), ("cuda", "cuda")])
def test_devices(dev: str, want: str) -> None:
    assert parse_args(["n.ini", "-dev", dev]).dev == want


@pytest.mark.parametrize("argv, message", [
    (["n.ini", "-lern", "5"], "unknown option -lern (did you mean -learn?)"),
    (["n.ini", "-learn-epochs", "5"], "(did you mean -learn-epoch?)"),
    (["n.ini", "-test-idx", "5"], "(did you mean -test-index?)"),
    (["n.ini", "-learn", "many"], "option -learn expects an integer, got 'many'"),
    (["n.ini", "-learn", "-3"], "option -learn expects a number >= 0, got -3"),
    (["n.ini", "-learn"], "option -learn expects a value (N)"),
    (["n.ini", "-valid-metric", "Recall"], "unknown metric 'Recall'"),
    (["n.ini", "-valid-metric", "F1-score"], "did you mean F1Score?"),
    (["n.ini", "-dev", "gpu1"], "'gpu1' is not a device"),
    (["n.ini", "-learn-stdp", "10"], "spiking models and STDP learning are not supported"),
    (["-learn", "10"], "missing the network file"),
    (["a.ini", "b.ini"], "one network file only"),
    (["n.ini", "-learn", "10", "-learn-epoch", "2"], "exclusive"),
    (["n.ini", "-qat-sat"], "add -test"),
    (["n.ini", "-test=1"], "takes no value"),
    (["n.ini", "-w", "a", "-l", "b"], "exclusive"),
    (["n.ini", "-fuse"], "-fuse acts on the test phase: add -test"),
    (["n.ini", "-learn", "9", "-nb-test", "5"], "-nb-test acts on the test phase: add -test"),
    (["n.ini", "-test-index", "2"], "-test-index acts on the test phase: add -test"),
    (["n.ini", "-w-ignore"], "-w-ignore acts on the test phase: add -test"),
    (["n.ini", "-test", "-test-index", "-2"], "expects an index >= 0 (or -1 = all), got -2"),
    (["n.ini", "-test", "-nb-test", "5", "-test-index", "2"], "exclusive"),
    (["n.ini", "-find-lr", "50", "-test"], "-find-lr exits after the range test"),
    (["n.ini", "-find-lr", "50", "-learn-epoch", "1"], "-find-lr exits after the range test"),
])
def test_option_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UserError) as error:
        parse_args(argv)
    assert message in str(error.value)


@pytest.mark.parametrize("argv, notices", [
    (["n.ini", "-learn-epoch", "2", "-log", "10", "-bench"], ["-log is ignored without -learn"]),
    (["n.ini", "-learn", "20", "-log-epoch", "2"], ["-log-epoch is ignored without -learn-epoch"]),
    (["n.ini", "-test", "-bench"], ["-bench is ignored without -learn or -learn-epoch"]),
    (["n.ini", "-learn", "20", "-log", "10", "-bench"], []),
])
def test_idle_learning_options_are_noticed(argv: list[str], notices: list[str],
                                           capsys: pytest.CaptureFixture) -> None:
    parse_args(argv)
    assert capsys.readouterr().err.splitlines() == [f"Notice: {n}" for n in notices]


def test_help_lists_every_option_with_defaults() -> None:
    text = help_text()
    for spec in OPTION_SPECS:
        assert f"  {spec.name}" in text, spec.name
    assert "[1000]" in text and "[Sensitivity]" in text and "[100]" in text
    assert "--version" in text and "-h, --help" in text


def test_main_help_version_and_exit_codes(capsys: pytest.CaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.main(["-h"]) == 0 and "-learn-epoch" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0 and capsys.readouterr().out.startswith("n2q ")
    assert cli.main(["n.ini", "-lern", "3"]) == 2
    assert capsys.readouterr().err == "Error: unknown option -lern (did you mean -learn?)\n"

    import n2q.run

    def interrupted(options: Options) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(n2q.run, "run", interrupted)
    assert cli.main(["n.ini"]) == 130
    assert "Interrupted" in capsys.readouterr().err


def test_describe_prints_n2d2_option_lines() -> None:
    lines = describe(parse_args(["n.ini", "-learn-epoch", "10", "-test"]))
    assert lines[0].startswith("Option -learn-epoch: ") and lines[0].endswith("[10]")
    assert lines[1].startswith("Option -test: ")


# -- the real command, in a subprocess ---------------------------------------------------------
def n2q(*args: str, cwd: Path, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "n2q", *args] if code is None else [
        sys.executable, "-c", code, *args]
    env = dict(os.environ, N2Q_DATA=str(cwd))
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_import_cli_does_not_import_torch(tmp_path: Path) -> None:
    code = "import sys, n2q.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


BAD_INI = """[database]
Type=MNIST_IDX_Database

[sp]
SizeX=8
SizeY=8

[fc1]
Input=sp
Type=Fc
NbOutputs=10
Solvers.LearningRat=0.1

[fc1.Target]
"""


def test_user_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    result = n2q("missing.ini", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "Error: no such network file: missing.ini\n"
    result = n2q("missing.ini", "-lern", "4", cwd=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "did you mean -learn?" in result.stderr


def test_ini_errors_name_file_line_section_key(tmp_path: Path) -> None:
    (tmp_path / "bad.ini").write_text(BAD_INI)
    # no data here: the layer sections (solver keys included) are checked before the data
    # base loads, on a run that does not learn too, and nothing is left on disk
    result = n2q("bad.ini", "-test", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert last.startswith("Error: bad.ini:12: [fc1] Solvers.LearningRat: unknown solver key")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ini"]
    (tmp_path / "good.ini").write_text(BAD_INI.replace("LearningRat=", "LearningRate="))
    result = n2q("good.ini", "-learn-epoch", "1", cwd=tmp_path)
    # the data set is missing (no mnist/ in the data root): named with the install command
    assert result.returncode == 2, result.stderr
    assert "mnist" in result.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ini", "good.ini"]
    result = n2q("bad.ini", "-learn-epoch", "1", "--debug", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" in result.stderr


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_solver_key_error_through_the_command(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"mnist/{prefix}-images-idx3-ubyte", np.zeros((20, 8, 8)))
        write_idx(tmp_path / f"mnist/{prefix}-labels-idx1-ubyte", np.arange(20) % 10)
    (tmp_path / "bad.ini").write_text(BAD_INI)
    result = n2q("bad.ini", "-learn-epoch", "1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: bad.ini:12: [fc1] Solvers.LearningRat: unknown solver key (did you mean "
        "Solvers.LearningRate?); valid: Beta1, Beta2, Clamping, Decay, Epsilon, IterationSize, "
        "LearningRate, LearningRateDecay, LearningRatePolicy, LearningRateStepSize, "
        "MaxIterations, MinDecay, Momentum, PolyakMomentum, Power, QuantizationLevels, "
        "WarmUpDuration, WarmUpLRFrac")


def test_internal_errors_exit_1_with_traceback(tmp_path: Path) -> None:
    code = ("import sys, n2q.run as r\n"
            "def boom(options): raise ZeroDivisionError('internal')\n"
            "r.run = boom\n"
            "from n2q.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    result = n2q("net.ini", cwd=tmp_path, code=code)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ZeroDivisionError: internal" in result.stderr
