"""examples/lenet_sat.py (seed 004's LeNet tutorial in Python) against the INI workflow.

The script and ``n2q configs/LeNet_SAT_clamp.ini`` then ``n2q configs/LeNet_SAT_W4A4.ini -w
weights_clamped`` run on the real MNIST of ``$N2Q_TEST_DATA`` with the same seed and the same
number of learning steps; every weights file they write must be identical, byte for byte
(same initial weights, same data order, same updates: the same code learns both).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STIMULI = "768"       # 3 batches of 256 per part
SEED = "5"


def _env(data: Path) -> dict[str, str]:
    env = dict(os.environ, N2Q_DATA=str(data), MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _n2q(workdir: Path, env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "n2q", *args], cwd=workdir, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _syntxt(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.syntxt"))}


@pytest.mark.slow
def test_lenet_example_learns_the_ini_workflow_weights(test_data: Path, tmp_path: Path) -> None:
    env = _env(test_data)
    ini_dir, py_dir = tmp_path / "ini", tmp_path / "python"
    ini_dir.mkdir()
    py_dir.mkdir()
    steps = ("-learn", STIMULI, "-log", STIMULI, "-seed", SEED)
    _n2q(ini_dir, env, str(ROOT / "configs" / "LeNet_SAT_clamp.ini"), *steps)
    shutil.copytree(ini_dir / "weights_validation", ini_dir / "weights_clamped")
    _n2q(ini_dir, env, str(ROOT / "configs" / "LeNet_SAT_W4A4.ini"), *steps,
         "-w", "weights_clamped")

    done = subprocess.run([sys.executable, str(ROOT / "examples" / "lenet_sat.py"),
                           "--stimuli", STIMULI, "--log", STIMULI, "--seed", SEED],
                          cwd=py_dir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    clamped_ini, clamped_py = _syntxt(ini_dir / "weights_clamped"), _syntxt(py_dir /
                                                                             "weights_clamped")
    assert "conv1_weights.syntxt" in clamped_ini and "fc2_weights.syntxt" in clamped_ini
    assert clamped_py == clamped_ini
    quant_ini = _syntxt(ini_dir / "weights_validation")
    quant_py = _syntxt(py_dir / "new_weights")
    assert any("QAct" in name for name in quant_ini)     # the learned alphas are compared too
    assert quant_py == quant_ini
    # the steps did change the weights (else equality would prove nothing)
    assert _syntxt(ini_dir / "weights_init") != clamped_ini
    # the script went on to fuse and draw
    assert (py_dir / "weights_quantized").is_dir()
    assert (py_dir / "lenet_fused.dot").is_file()
    assert "fused test:" in done.stdout
