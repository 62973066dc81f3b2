"""QDQ export of tiny layers quantized by the real methods, every mode that exports.

A Conv (3 outputs, 2x3x3 weights) + BatchNorm + Fc + Softmax network gets the quantizer keys
of one case; the written model's scale / zero point / stored integers are checked against the
values worked out by hand from spec/quant.md (SAT Default R=15: odd integers, scale 1/15;
Symmetric: -7..7, 1/7; Asymmetric: -8..7, 1/7; FullRange: odd integers; ApplyScaling: scale
1/(R s) with s = sqrt(var(w_q) n_out) recomputed from the stored integers; SAT activations:
0..R, alpha/R; LSQ weights -8..7 and activations 0..R times the step size; LSQ NNI activations
-8..7; SimQAT per-channel symmetric weights and asymmetric uint8 activations from their
tracked ranges; SLB's one-hot weights), and onnxruntime gives n2q's outputs. SimQAT's BatchNorm
folding is refused by the export's check, never written wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from n2q.config import load_config
from n2q.export import export_network
from n2q.net import build_network

NET = """
[sp]
SizeX=6
SizeY=6
NbChannels=2
BatchSize=4

[conv1]
Input=sp
Type=Conv
KernelDims=3 3
NbOutputs=3
ActivationFunction=Linear
{conv}

[bn1]
Input=conv1
Type=BatchNorm
ActivationFunction={bn_act}
{bn}

[fc1]
Input=bn1
Type=Fc
NbOutputs=4
ActivationFunction=Linear
{fc}

[softmax]
Input=fc1
Type=Softmax
WithLoss=1

[softmax.Target]
"""

# case: (conv keys, bn keys, fc keys, BatchNorm activation)
CASES = {
    "SAT Default": ("QWeight=SAT\nQWeight.Range=15", "QAct=SAT\nQAct.Alpha=3.0\nQAct.Range=15",
                    "", "Linear"),
    "SAT Integer mode": ("QWeight=SAT\nQWeight.Range=15\nQWeight.Mode=Integer", "", "",
                         "Rectifier"),
    "SAT FullRange": ("QWeight=SAT\nQWeight.Range=15\nQWeight.QuantMode=FullRange", "", "",
                      "Rectifier"),
    "SAT Symmetric": ("QWeight=SAT\nQWeight.Range=15\nQWeight.QuantMode=Symmetric", "", "",
                      "Rectifier"),
    "SAT Asymmetric": ("QWeight=SAT\nQWeight.Range=15\nQWeight.QuantMode=Asymmetric", "", "",
                       "Rectifier"),
    "SAT ApplyScaling": ("", "", "QWeight=SAT\nQWeight.Range=15\nQWeight.ApplyScaling=1",
                         "Rectifier"),
    "LSQ": ("QWeight=LSQ\nQWeight.Range=15\nQWeight.StepSize=0.05\n"
            "QWeight.StepOptInitStepSize=0",
            "QAct=LSQ\nQAct.Range=15\nQAct.StepSize=0.1\nQAct.StepOptInitStepSize=0",
            "QWeight=LSQ\nQWeight.Range=255\nQWeight.StepSize=0.002\n"
            "QWeight.StepOptInitStepSize=0", "Rectifier"),
    "LSQ NNI activations": ("", "QAct=LSQ\nQAct.Range=15\nQAct.Variant=NNI\nQAct.StepSize=0.1"
                                "\nQAct.StepOptInitStepSize=0", "", "Rectifier"),
}


def build(tmp_path: Path, case: str):
    conv, bn, fc, act = CASES[case]
    ini = tmp_path / "net.ini"
    ini.write_text(NET.format(conv=conv, bn=bn, fc=fc, bn_act=act))
    torch.manual_seed(0)
    net = build_network(load_config(ini), (2, 6, 6))
    with torch.no_grad():
        net.cells["bn1"].running_mean.uniform_(-0.2, 0.2)
        net.cells["bn1"].running_var.uniform_(0.02, 0.05)   # outputs spread over the range
    return net.eval()


def exported(tmp_path: Path, case: str):
    net = build(tmp_path, case)
    x = torch.rand(16, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    result = export_network(net, "ONNX", batch=x, folder=tmp_path, name="tiny")
    model = onnx.load(str(result.model))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    got = ort.InferenceSession(str(result.model)).run(None, {"sp": x.numpy()})[0]
    with torch.no_grad():
        want = net.forward_all(x)["softmax"].flatten(1).numpy()
    assert np.abs(got - want).max() < 1e-5
    return net, inits, result


WEIGHT_GRIDS = {   # case: (scale, stored integers allowed)
    "SAT Default": (1 / 15, set(range(-15, 16, 2))),
    "SAT Integer mode": (1 / 15, set(range(-15, 16, 2))),
    "SAT FullRange": (1 / 15, set(range(-15, 16, 2))),
    "SAT Symmetric": (1 / 7, set(range(-7, 8))),
    "SAT Asymmetric": (1 / 7, set(range(-8, 8))),
    "LSQ": (0.05, set(range(-8, 8))),
}


@pytest.mark.parametrize("case", list(WEIGHT_GRIDS))
def test_conv_weight_grid(case: str, tmp_path: Path) -> None:
    net, inits, _ = exported(tmp_path, case)
    scale, allowed = WEIGHT_GRIDS[case]
    w = inits["conv1/weight/quantized"]
    assert w.dtype == np.int8 and set(np.unique(w).tolist()) <= allowed
    assert inits["conv1/weight/scale"] == np.float32(scale)
    assert inits["conv1/weight/zero_point"] == 0
    with torch.no_grad():
        wq = net.cells["conv1"].quantized_weight().numpy()
    assert np.abs(w * np.float32(scale) - wq).max() < 1e-6


def test_sat_apply_scaling_scale_is_one_over_r_s(tmp_path: Path) -> None:
    _, inits, _ = exported(tmp_path, "SAT ApplyScaling")
    w = inits["fc1/weight/quantized"]              # [4, 3*4*4] odd integers
    assert set(np.unique(w) % 2) == {1}
    # s = sqrt(var_unbiased(w_q) * n_out), w_q = w / 15, n_out = NbOutputs = 4 (Fc)
    s = np.sqrt(np.var(w.astype(np.float64) / 15, ddof=1) * 4)
    assert inits["fc1/weight/scale"] == pytest.approx(1 / (15 * s), rel=1e-5)


def test_sat_activation_alpha_over_r(tmp_path: Path) -> None:
    _, inits, result = exported(tmp_path, "SAT Default")
    assert inits["bn1/q/scale"] == np.float32(3.0 / 15)
    assert inits["bn1/q/zero_point"] == 0 and inits["bn1/q/zero_point"].dtype == np.int8
    assert (inits["bn1/q/min"], inits["bn1/q/max"]) == (0, np.float32(3.0))
    trt = (result.folder / "tensorrt_dynamic_range.txt").read_text()
    assert trt == "bn1/q: 3.0\n"


def test_lsq_activation_step_times_range(tmp_path: Path) -> None:
    _, inits, result = exported(tmp_path, "LSQ")
    assert inits["bn1/q/scale"] == np.float32(0.1)
    assert inits["bn1/q/max"] == np.float32(1.5)          # 15 steps of 0.1
    import json
    calib = json.loads((result.folder / "calibration.json").read_text())
    assert calib["bn1"]["output_bits"] == 4
    assert calib["bn1"]["tracked_max_output"] == pytest.approx(1.5)
    assert calib["fc1"] == {"weight_bits": 8, "input_bits": 4, "tracked_min_input": 0.0,
                            "tracked_max_input": pytest.approx(1.5)}
    assert calib["conv1"] == {"weight_bits": 4}
    assert inits["fc1/weight/scale"] == np.float32(0.002)
    assert inits["fc1/weight/quantized"].dtype == np.int8      # LSQ 8-bit: -128..127


def test_lsq_nni_signed_activations(tmp_path: Path) -> None:
    _, inits, _ = exported(tmp_path, "LSQ NNI activations")
    assert inits["bn1/q/scale"] == np.float32(0.1)
    assert (inits["bn1/q/min"], inits["bn1/q/max"]) == (np.float32(-0.8), np.float32(0.7))


def trained(tmp_path: Path, conv: str, bn: str, fc: str):
    """A tiny net whose quantizers have tracked their ranges over a few training steps."""
    from helpers import train_briefly

    from n2q.quant.protocol import quantizers

    ini = tmp_path / "net.ini"
    ini.write_text(NET.format(conv=conv, bn=bn, fc=fc, bn_act="Rectifier"))
    torch.manual_seed(0)
    net = build_network(load_config(ini), (2, 6, 6))
    for cell, q in quantizers(net):
        q.bind(net.cells[cell], net)
    train_briefly(net, (2, 6, 6), "softmax", 4, steps=3, batch=8, lr=0.01, first_seed=0)
    return net


def test_simqat_per_channel_weights_and_asymmetric_activations(tmp_path: Path) -> None:
    """SimQAT (spec/quant.md): symmetric 8-bit weights per output channel, scale 2M/255 with
    M = max(|min|, max) of the tracked range, written as int8 with zero point 0 on axis 0;
    asymmetric activations: scale (max - min)/255, zero point round(-min/scale) on uint8."""
    net = trained(tmp_path, "QWeight=SimQAT", "QAct=SimQAT", "")
    x = torch.rand(16, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    result = export_network(net, "ONNX", batch=x, folder=tmp_path, name="tiny")
    model = onnx.load(str(result.model))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    wq = net.cells["conv1"].weight_quantizer
    m = torch.maximum(-wq.min, wq.max).double()
    assert np.allclose(inits["conv1/weight/scale"], (2 * m / 255).numpy(), rtol=1e-6)
    assert inits["conv1/weight/zero_point"].dtype == np.int8
    assert inits["conv1/weight/zero_point"].tolist() == [0, 0, 0]
    dq = next(n for n in model.graph.node if n.output[0] == "conv1/weight")
    assert [(a.name, a.i) for a in dq.attribute] == [("axis", 0)]
    aq = net.cells["bn1"].act_quantizer
    lo, hi = float(min(aq.min.min(), 0)), float(max(aq.max.max(), 0))
    scale = (hi - lo) / 255
    assert inits["bn1/q/scale"] == pytest.approx(scale, rel=1e-6)
    assert inits["bn1/q/zero_point"].dtype == np.uint8
    assert int(inits["bn1/q/zero_point"]) == int(np.clip(np.round(-lo / scale), 0, 255))


def test_slb_one_hot_weights(tmp_path: Path) -> None:
    """SLB Range=3 (2 bits): the one-hot weights (2k - 3)/3 are the odd integers -3..3 with
    scale 1/3, in int8."""
    net = trained(tmp_path, "QWeight=SLB\nQWeight.Range=3", "", "")
    x = torch.rand(16, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    result = export_network(net, "ONNX", batch=x, folder=tmp_path, name="tiny")
    inits = {i.name: numpy_helper.to_array(i)
             for i in onnx.load(str(result.model)).graph.initializer}
    w = inits["conv1/weight/quantized"]
    assert w.dtype == np.int8 and set(np.unique(w).tolist()) <= {-3, -1, 1, 3}
    assert inits["conv1/weight/scale"] == np.float32(1 / 3)
    with torch.no_grad():
        assert np.allclose(w / 3, net.cells["conv1"].quantized_weight().numpy(), atol=1e-6)


def test_simqat_batchnorm_folding_is_refused_not_exported_wrong(tmp_path: Path) -> None:
    """FoldBN changes the Conv's op (its output is divided by gamma/sigma before the
    BatchNorm): the exporter writes Conv + BatchNormalization, so its check refuses."""
    from n2q.errors import UserError

    net = trained(tmp_path, "QWeight=SimQAT\nQWeight.FoldBN=OneConv", "QAct=SimQAT", "")
    x = torch.rand(16, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    with pytest.raises(UserError, match="cell conv1: onnxruntime's output differs .* folds the "
                       "next BatchNorm"):
        export_network(net, "ONNX", batch=x, folder=tmp_path, name="tiny")
    assert not (tmp_path / "export_ONNX").exists()
