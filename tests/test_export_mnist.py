"""QDQ export of 4-bit LeNets trained briefly on the real MNIST, through the user's commands:

    n2q configs/LeNet_SAT_clamp.ini -learn 4096 -log 4096
    cp -r weights_validation weights_clamped
    n2q configs/LeNet_SAT_W4A4.ini -learn 4096 -log 4096 -w weights_clamped -test -export ONNX

and the same with LSQ W4A4 (configs/LeNet_LSQ_NNI.ini at Range=15, N2D2's variant). The written
model, run by onnxruntime on every test digit, gives the class n2q's fake quantization gives
(the network rebuilt from the INI and weights_validation), except on near-ties whose count and
n2q top-two logit margins are checked; calibration.json and the TensorRT file hold the learned
alphas / step sizes times the ranges.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from n2q import cli
from n2q.config import load_config
from n2q.data import make_provider
from n2q.io.weights import load_weights
from n2q.net import build_network

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LEARN = ("-learn", "4096", "-log", "4096", "-seed", "3")
MAX_TIES = 2           # disagreements allowed, each a near-tie (below)
TIE_MARGIN = 0.05      # n2q's top-two logit margin of a near-tie, relative to its logit range


def n2q(*argv: str) -> None:
    assert cli.main([str(a) for a in argv]) == 0, argv


def compare_on_test_set(ini: Path, provider: str) -> tuple[object, dict[str, int | list]]:
    """n2q's fake quantization (INI + weights_validation) against onnxruntime on the exported
    model, on every test digit."""
    cfg = load_config(ini)
    sp = make_provider(cfg, 3, provider)
    net = build_network(cfg, sp.size)
    load_weights(net, "weights_validation")
    net.eval()
    session = ort.InferenceSession(str(Path("export_ONNX") / f"{ini.stem}.onnx"))
    fc2 = next(n for n in net.inputs["softmax"])
    total, ties = 0, []
    with torch.no_grad():
        for x, _ in sp.loader("Test", shuffle=False):
            logits = net.forward_all(x)[fc2].flatten(1)
            theirs = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
            differ = torch.from_numpy(theirs.argmax(1)) != logits.argmax(1)
            top2 = logits.topk(2, dim=1).values
            spread = (logits.max(1).values - logits.min(1).values)
            for i in torch.nonzero(differ).flatten().tolist():
                ties.append(float((top2[i, 0] - top2[i, 1]) / spread[i]))
            total += len(x)
    return net, {"total": total, "ties": ties}


def check_agreement(stats: dict) -> None:
    print(f"\nonnxruntime vs n2q: {stats['total'] - len(stats['ties'])}/{stats['total']} same "
          f"class; near-tie margins {stats['ties']}")
    assert stats["total"] == 2000
    assert len(stats["ties"]) <= MAX_TIES
    assert all(m < TIE_MARGIN for m in stats["ties"])


@pytest.mark.slow
def test_sat_w4a4_lenet_qdq_export(test_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    monkeypatch.chdir(tmp_path)
    n2q(CONFIGS / "LeNet_SAT_clamp.ini", *LEARN)
    shutil.copytree("weights_validation", "weights_clamped")
    n2q(CONFIGS / "LeNet_SAT_W4A4.ini", *LEARN, "-w", "weights_clamped", "-test",
        "-export", "ONNX")
    folder = Path("export_ONNX")
    assert {p.name for p in folder.iterdir()} == {"LeNet_SAT_W4A4.onnx", "report.txt",
                                                  "calibration.json",
                                                  "tensorrt_dynamic_range.txt"}
    net, stats = compare_on_test_set(CONFIGS / "LeNet_SAT_W4A4.ini", "env")
    check_agreement(stats)
    calib = json.loads((folder / "calibration.json").read_text())
    ranges = dict(line.split(": ") for line in
                  (folder / "tensorrt_dynamic_range.txt").read_text().splitlines())
    for bn, reader in (("bn1", "conv2"), ("bn2", "conv3"), ("bn3", "fc1")):
        alpha = float(net.cells[bn].act_quantizer.alpha.detach().abs())   # 15 steps of alpha/15
        assert calib[bn]["output_bits"] == 4 and calib[bn]["tracked_min_output"] == 0
        assert calib[bn]["tracked_max_output"] == pytest.approx(alpha, rel=1e-6)
        assert calib[reader]["tracked_max_input"] == pytest.approx(alpha, rel=1e-6)
        assert float(ranges[f"{bn}/q"]) == pytest.approx(alpha, rel=1e-6)
    assert calib["conv1"]["weight_bits"] == 8 and calib["conv2"]["weight_bits"] == 4
    report = (folder / "report.txt").read_text()
    assert "conv1 weight: grid [-255, 255] step 2" in report and "float constants" in report


def lsq_w4a4_ini(tmp_path: Path) -> Path:
    text = (CONFIGS / "LeNet_LSQ_NNI.ini").read_text()
    text = text.replace("QWeight.Range=255", "QWeight.Range=15").replace(
        "QAct.Range=255", "QAct.Range=15")
    lines = [line for line in text.splitlines() if ".Variant=" not in line]
    ini = tmp_path / "LeNet_LSQ_W4A4.ini"
    ini.write_text("\n".join(lines) + "\n")
    return ini


@pytest.mark.slow
def test_lsq_w4a4_lenet_qdq_export(test_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    monkeypatch.chdir(tmp_path)
    ini = lsq_w4a4_ini(tmp_path)
    n2q(ini, *LEARN, "-test", "-export", "ONNX")
    net, stats = compare_on_test_set(ini, "sp")
    check_agreement(stats)
    folder = Path("export_ONNX")
    calib = json.loads((folder / "calibration.json").read_text())
    for cell in ("conv1", "conv2", "fc1"):
        step = float(net.cells[cell].act_quantizer.step_size.detach())
        assert calib[cell]["output_bits"] == 4
        assert calib[cell]["tracked_max_output"] == pytest.approx(15 * step, rel=1e-6)
        assert calib[cell]["weight_bits"] == 4
    assert calib["fc2"]["tracked_max_input"] == pytest.approx(
        15 * float(net.cells["fc1"].act_quantizer.step_size.detach()), rel=1e-6)
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(folder / "LeNet_LSQ_W4A4.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for cell in ("conv1", "conv2", "fc1", "fc2"):
        step = np.float32(net.cells[cell].weight_quantizer.step_size.detach())
        assert inits[f"{cell}/weight/scale"] == step            # the learned step size
        assert inits[f"{cell}/weight/quantized"].min() >= -8
        assert inits[f"{cell}/weight/quantized"].max() <= 7
