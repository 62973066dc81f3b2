"""``QWeight.Mode=Integer`` (seed 004, integer-only QAT) on a whole network built from an INI:
the Conv/Fc ops run on the integer levels and rescale their bias-free output, so the network
predicts what the fake-quantized (``Mode=Default``) network predicts, and learns the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from n2q.config import load_config
from n2q.net.graph import build_network

# conv1 (8-bit SAT, bias), bn1 + 4-bit SAT activation, conv2 with SubSample (the sum-pooled
# path, bias), fc1 4-bit LSQ (bias), fc2 8-bit SAT with ApplyScaling (no bias)
NET = """
[sp]
SizeX=12
SizeY=12
NbChannels=2
BatchSize=4

[conv1]
Input=sp
Type=Conv
KernelDims=3 3
NbOutputs=5
ActivationFunction=Linear
QWeight=SAT
QWeight.Range=255
QWeight.Mode={mode}

[bn1]
Input=conv1
Type=BatchNorm
NbOutputs=5
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=3.0
QAct.Range=15

[conv2]
Input=bn1
Type=Conv
KernelDims=3 3
SubSampleDims=2 2
NbOutputs=4
ActivationFunction=Rectifier
QWeight=SAT
QWeight.Range=15
QWeight.QuantMode=Symmetric
QWeight.Mode={mode}

[fc1]
Input=conv2
Type=Fc
NbOutputs=6
ActivationFunction=Rectifier
QWeight=LSQ
QWeight.Range=15
QWeight.Mode={mode}

[fc2]
Input=fc1
Type=Fc
NbOutputs=3
NoBias=1
ActivationFunction=Linear
QWeight=SAT
QWeight.Range=255
QWeight.ApplyScaling=1
QWeight.Mode={mode}

[softmax]
Input=fc2
Type=Softmax
NbOutputs=3
WithLoss=1

[softmax.Target]
"""


def _net(tmp_path: Path, mode: str):
    ini = tmp_path / f"{mode}.ini"
    ini.write_text(NET.format(mode=mode))
    torch.manual_seed(0)
    return build_network(load_config(ini), (2, 12, 12))


def _pair(tmp_path: Path):
    fake, integer = _net(tmp_path, "Default"), _net(tmp_path, "Integer")
    integer.load_state_dict(fake.state_dict())
    with torch.no_grad():   # non-zero biases, so that a bias scaled with the output shows
        for cell in ("conv1", "conv2", "fc1"):
            for net in (fake, integer):
                net.cells[cell].bias.copy_(torch.linspace(-0.5, 0.5, net.cells[cell].bias.numel()))
    return fake, integer


def test_the_ini_builds_integer_weights(tmp_path):
    _, integer = _pair(tmp_path)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        cell = integer.cells[name]
        assert cell.weight_quantizer.integer, name
        w_int = cell.weight_quantizer(cell.weight).weight.detach()
        assert torch.equal(w_int, w_int.round()), f"{name}: Integer mode holds integers"
        assert w_int.abs().max() > 1, f"{name}: levels, not float-unit weights"


@pytest.mark.parametrize("training", [False, True])
def test_integer_mode_predicts_and_learns_as_fake_quantization(tmp_path, training):
    fake, integer = _pair(tmp_path)
    torch.manual_seed(1)
    x = torch.rand(4, 2, 12, 12) * 2
    label = torch.tensor([0, 2, 1, 2])
    outs, grads = [], []
    for net in (fake, integer):
        net.train(training)
        logits = net.forward_all(x)["fc2"].flatten(1)       # [4, 3]
        torch.nn.functional.cross_entropy(logits, label).backward()
        outs.append(logits.detach())
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(outs[1].argmax(1), outs[0].argmax(1))
    assert outs[0].abs().max() > 0.1            # a network that computes something
    assert grads[1].keys() == grads[0].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_quantized_weight_is_in_float_units_in_both_modes(tmp_path):
    fake, integer = _pair(tmp_path)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        torch.testing.assert_close(integer.cells[name].quantized_weight(),
                                   fake.cells[name].quantized_weight(), rtol=1e-6, atol=1e-7)
