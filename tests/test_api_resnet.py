"""examples/resnet18_onnx_sat.py (seed 004's ONNX ResNet-18 tutorial in Python) against
configs/resnet18-v1_SAT_clamp.ini then configs/resnet18-v1_SAT_W4A4.ini -w weights_clamped.

Both run on the zoo-shaped ResNet-18 v1 of the ONNX tests (MXNet node names, narrow widths,
3 classes) and a small ImageNet-shaped folder, at 64x64 (the INI files' 224/256/16 crop sizes
scaled to 64/73/4, batch 4 instead of 128), with the same seed and the same steps; every
weights file of both steps must be identical.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from helpers import make_tiny_imagenet, resnet18v1

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = (8, 8, 16, 16)
STIMULI, SEED = "8", "3"      # 2 batches of 4 = one update (IterationSize=2) per step

# the INI files' sizes -> the test's (as the example's --size 64 computes them)
SMALL = [("SizeX=224", "SizeX=64"), ("SizeY=224", "SizeY=64"), ("BatchSize=128", "BatchSize=4"),
         ("Width=224\nHeight=224", "Width=64\nHeight=64"),
         ("Width=256\nHeight=256", "Width=73\nHeight=73"),
         ("OffsetX=16\nOffsetY=16", "OffsetX=4\nOffsetY=4"), ("NbOutputs=1000", "NbOutputs=3")]


def small_ini(name: str, folder: Path) -> Path:
    text = (ROOT / "configs" / name).read_text()
    for old, new in SMALL:
        assert old in text, old
        text = text.replace(old, new)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def zoo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """$N2Q_MODELS/ONNX/resnet-18-v1/resnet18v1.onnx and $N2Q_DATA/ILSVRC2012, small."""
    model = tmp_path / "models" / "ONNX" / "resnet-18-v1" / "resnet18v1.onnx"
    model.parent.mkdir(parents=True)
    onnx.save(resnet18v1(size=64, classes=3, widths=WIDTHS), str(model))
    make_tiny_imagenet(tmp_path / "data" / "ILSVRC2012")
    env = dict(os.environ, N2Q_DATA=str(tmp_path / "data"), N2Q_MODELS=str(tmp_path / "models"),
               MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return tmp_path, env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def _syntxt(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.syntxt"))}


@pytest.mark.slow
def test_resnet_example_learns_the_ini_workflow_weights(zoo) -> None:
    tmp, env = zoo
    ini_dir, py_dir = tmp / "ini", tmp / "python"
    ini_dir.mkdir()
    py_dir.mkdir()
    steps = ["-learn", STIMULI, "-log", STIMULI, "-seed", SEED, "-valid-metric", "Precision"]
    _run(["-m", "n2q", str(small_ini("resnet18-v1_SAT_clamp.ini", tmp)), *steps], ini_dir, env)
    shutil.copytree(ini_dir / "weights_validation", ini_dir / "weights_clamped")
    _run(["-m", "n2q", str(small_ini("resnet18-v1_SAT_W4A4.ini", tmp)), *steps,
          "-w", "weights_clamped"], ini_dir, env)

    out = _run([str(ROOT / "examples" / "resnet18_onnx_sat.py"), "--size", "64",
                "--batch-size", "4", "--stimuli", STIMULI, "--log", STIMULI, "--seed", SEED],
               py_dir, env)

    clamped = _syntxt(ini_dir / "weights_clamped")
    assert "resnetv15_conv0_fwd_weights.syntxt" in clamped
    assert _syntxt(py_dir / "resnet_weights_clamped") == clamped
    assert clamped != _syntxt(ini_dir / "weights_init")     # the step changed the weights
    quantized = _syntxt(ini_dir / "weights_validation")
    assert sum("QAct" in name for name in quantized) == 17   # one alpha per former ReLU
    assert _syntxt(py_dir / "resnet_weights_SAT") == quantized
    assert (py_dir / "resnet18v1_SAT.dot").is_file() and "test:" in out
