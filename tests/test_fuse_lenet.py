"""Seed 004's hand-made LeNet with BatchNorm, trained W4A4 briefly on the real MNIST, fused.

The fused integer network must give the same class as the fake-quant network on all 2000 test
digits (both fed the same 8-bit images: the fused network's input is round(255 x) by
definition), hence the same recognition rate, with integer activations in [0, R] and a share
of activations one level off (rounding ties) below 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from n2q.config import load_config
from n2q.data import make_provider
from n2q.net import build_network
from n2q.quant.fuse import fuse_sat, load_fused, save_fused

# Seed 004, "Hand-Made model : LeNet Example - INI File", 4-bit step (conv1 / fc2 8-bit weights,
# W4A4 elsewhere). Solvers are not used here: the test trains with plain torch SGD.
LENET_INI = """
[database]
Type=MNIST_IDX_Database
RandomPartitioning=1

[env]
SizeX=32
SizeY=32
BatchSize=128

[env.Transformation_0]
Type=RescaleTransformation
Width=32
Height=32

[Conv_def]
Type=Conv
ActivationFunction=Linear
QWeight=SAT
QWeight.ApplyScaling=0
QWeight.ApplyQuantization=1
QWeight.Range=15
NoBias=1

[Fc_def]
Type=Fc
ActivationFunction=Linear
QWeight=SAT
QWeight.ApplyScaling=1
QWeight.ApplyQuantization=1
QWeight.Range=15
NoBias=1

[Bn_def]
Type=BatchNorm
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=6.0
QAct.Range=15

[conv1] Conv_def
Input=env
KernelWidth=5
KernelHeight=5
NbOutputs=6
QWeight.Range=255

[bn1] Bn_def
Input=conv1
NbOutputs=[conv1]NbOutputs

[pool1]
Input=bn1
Type=Pool
PoolWidth=2
PoolHeight=2
NbOutputs=6
Stride=2
Pooling=Max
Mapping.Size=1

[conv2] Conv_def
Input=pool1
KernelWidth=5
KernelHeight=5
NbOutputs=16

[bn2] Bn_def
Input=conv2
NbOutputs=[conv2]NbOutputs

[pool2]
Input=bn2
Type=Pool
PoolWidth=2
PoolHeight=2
NbOutputs=16
Stride=2
Pooling=Max
Mapping.Size=1

[conv3] Conv_def
Input=pool2
KernelWidth=5
KernelHeight=5
NbOutputs=120

[bn3] Bn_def
Input=conv3
NbOutputs=[conv3]NbOutputs

[conv3.drop]
Input=bn3
Type=Dropout
NbOutputs=[conv3]NbOutputs

[fc1] Fc_def
Input=conv3.drop
NbOutputs=84

[fc1.drop]
Input=fc1
Type=Dropout
NbOutputs=[fc1]NbOutputs

[fc2] Fc_def
Input=fc1.drop
ActivationFunction=Linear
NbOutputs=10
QWeight.Range=255

[softmax]
Input=fc2
Type=Softmax
NbOutputs=10
WithLoss=1

[softmax.Target]
"""


def train(net, provider, epochs: int) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for epoch in range(epochs):
        for x, label in provider.loader("Learn", shuffle=True, epoch=epoch):
            loss = F.cross_entropy(net(x)["softmax"].flatten(1), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()


@pytest.mark.slow
def test_lenet_w4a4_mnist_fused_equals_fake_quant(
    test_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    ini = tmp_path / "LeNet.ini"
    ini.write_text(LENET_INI)
    cfg = load_config(ini)
    provider = make_provider(cfg, seed=1, name="env")
    torch.manual_seed(1)
    net = build_network(cfg, provider.size)
    train(net, provider, epochs=1)

    fused, float_lines = fuse_sat(net)
    # fc1 has no activation quantizer in the seed: its output is float, so fc1.drop and fc2
    # run in float (fc1 itself accumulates in integers); nothing else may stay float.
    assert [line.split(":")[0] for line in float_lines] == ["fc1.drop", "fc2"], float_lines
    assert [s.name for s in fused.steps if s.kind == "linear"] == ["conv1", "conv2", "conv3", "fc1"]
    same = correct_fake = correct_fused = total = differing = levels = 0
    max_logit_diff = 0.0
    with torch.no_grad():
        for x, label in provider.loader("Test", shuffle=False):
            x8 = torch.round(x.clamp(0, 1) * 255) / 255  # the fused network's input grid
            fake_all, fused_all = net.forward_all(x8), fused.forward_all(x8)
            assert fused.check_integer_outputs(fused_all) == []
            for node in fused.integer_nodes():
                domain = fused.domains[node]
                ref = torch.round(fake_all[fused.source_cell(node)] * domain.range / domain.alpha)
                differing += int((fused_all[node].float() != ref).sum())
                levels += ref.numel()
            fake = net(x8)["softmax"].flatten(1)
            logits = fused(x8)["softmax"].flatten(1)
            max_logit_diff = max(max_logit_diff, float((fake - logits).abs().max()))
            same += int((fake.argmax(1) == logits.argmax(1)).sum())
            correct_fake += int((fake.argmax(1) == label).sum())
            correct_fused += int((logits.argmax(1) == label).sum())
            total += len(label)
    share = differing / levels
    print(
        f"\nLeNet W4A4, {total} test digits: fake-quant {100 * correct_fake / total:.2f}%, "
        f"fused {100 * correct_fused / total:.2f}%, same class {same}/{total}, "
        f"max |logit diff| {max_logit_diff:.3g}, levels off by one {differing}/{levels}"
    )
    assert total == 2000
    assert same == total
    assert correct_fake == correct_fused
    assert correct_fused / total > 0.9  # the brief training did learn
    assert share < 1e-4

    folder = save_fused(fused, tmp_path / "weights_quantized")
    loaded = load_fused(net, folder)
    x, _ = next(iter(provider.loader("Test", shuffle=False)))
    with torch.no_grad():
        assert torch.equal(loaded(x)["softmax"], fused(x)["softmax"])
