"""The README's "Python" section runs as written: its ```python blocks, in order, from the
repository's configs/, with the real MNIST of $N2Q_TEST_DATA under $N2Q_DATA."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_covers_the_three_paths() -> None:
    code = "\n".join(python_blocks())
    assert len(python_blocks()) >= 3
    for needed in ("Network.from_ini", "n2q.Sequence", "quantize_model", "torchvision",
                   "load_weights", "fuse", "ignore_missing", "export_onnx"):
        assert needed in code, needed


@pytest.mark.slow
def test_readme_python_blocks_run_in_order(test_data: Path, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    script = tmp_path / "readme.py"
    script.write_text("\n".join(python_blocks()))
    env = dict(os.environ, N2Q_DATA=str(test_data), MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "weights_quantized").is_dir()
    assert (tmp_path / "export_ONNX" / "lenet_w4a4.onnx").is_file()
    assert (tmp_path / "hand_made_weights" / "conv1_weights.syntxt").is_file()
    assert "QuantizedConv2d" in done.stdout and "[conv1]" in done.stdout
