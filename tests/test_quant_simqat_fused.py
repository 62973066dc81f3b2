"""SimQAT networks fused to integers (Jacob et al.): uint8 activations with zero points, int8
weights per output channel, int32 bias and accumulators, requantized by float64 S' or by the
fixed-point (M0, shift) multipliers of n2q.quant.fixedpoint; layer by layer against the
fake-quantized network."""

from __future__ import annotations

import textwrap

import pytest
import torch
from helpers import random_stimuli, train_briefly

from n2q.config import load_config
from n2q.net import build_network
from n2q.quant.fixedpoint import use_fixed_point
from n2q.quant.fusion import fuse_network
from n2q.quant.protocol import quantizers

SHAPE = (1, 12, 12)
# conv1: own QAct after a ReLU; conv2 + a float BatchNorm + ReLU with the QAct on the
# BatchNorm (Golden Stick's default, no folding); fc1 ReLU; fc2 linear: an asymmetric output
# grid with a non-zero zero point
INI = """
[sp]
SizeX=12
SizeY=12
[simqat]
QWeight=SimQAT
QAct=SimQAT
[conv1]
Input=sp
Type=Conv
KernelDims=3 3
NbOutputs=4
ActivationFunction=Rectifier
ConfigSection=simqat
[pool1]
Input=conv1
Type=Pool
PoolDims=2 2
Stride=2
Pooling=Max
Mapping.Size=1
NbOutputs=4
[conv2]
Input=pool1
Type=Conv
KernelDims=3 3
NbOutputs=6
NoBias=1
ActivationFunction=Linear
QWeight=SimQAT
[bn2]
Input=conv2
Type=BatchNorm
ActivationFunction=Rectifier
QAct=SimQAT
[fc1]
Input=bn2
Type=Fc
NbOutputs=12
ActivationFunction=Rectifier
ConfigSection=simqat
[fc2]
Input=fc1
Type=Fc
NbOutputs=5
ActivationFunction=Linear
ConfigSection=simqat
[softmax]
Input=fc2
Type=Softmax
NbOutputs=5
WithLoss=1
[softmax.Target]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ini = tmp_path_factory.mktemp("simqat") / "net.ini"
    ini.write_text(textwrap.dedent(INI))
    torch.manual_seed(0)
    net = build_network(load_config(ini), SHAPE)
    for _, q in quantizers(net):
        q.after_step(1)          # QuantDelay 0: quantizing from the first step
    for name in ("conv1", "fc1", "fc2"):    # live ReLUs whatever the random labels do
        torch.nn.init.constant_(net.cells[name].bias, 0.1)
    train_briefly(net, SHAPE, "softmax", 5, steps=30, batch=16, lr=0.01, first_seed=100)
    return net


def _levels(net, fused, x):
    """{node: (fused levels, fake-quant levels)} on the same stimuli, and the logits."""
    fake_all, fused_all = net.forward_all(x), fused.forward_all(x)
    out = {}
    for node in fused.integer_nodes():
        domain = fused.domains[node]
        fake = fake_all[fused.source_cell(node)].double()
        out[node] = (fused_all[node].double(), torch.round(fake / domain.scale)
                     + domain.zero_point)
    return out, net(x)["softmax"].flatten(1), fused(x)["softmax"].flatten(1)


@pytest.mark.parametrize("fixed_point", [False, True])
def test_fused_simqat_network_matches_fake_quantization(trained, fixed_point):
    fused, float_lines = fuse_network(trained)
    assert float_lines == []            # every cell fused (the Softmax is float by design)
    if fixed_point:
        assert use_fixed_point(fused) == ["conv1", "conv2", "fc1", "fc2"]
    # int8 weights per output channel, zero points where the grids have them
    assert fused.cells["conv1"].weight.dtype == torch.int8
    assert fused.domains["fc2"].zero_point > 0          # a linear output: levels below it
    x = random_stimuli(200, 7, SHAPE)
    levels, fake_logits, fused_logits = _levels(trained, fused, x)
    report = []
    for node, (got, ref) in levels.items():
        diff = (got - ref).abs()
        domain = fused.domains[node]
        assert got.min() >= domain.qmin and got.max() <= domain.qmax, node
        report.append(f"{node}: {float((diff == 0).double().mean()):.4f} equal, "
                      f"{float((diff == 1).double().mean()):.4f} one level off")
        assert diff.max() <= 1, node
        assert float((diff == 0).double().mean()) > 0.99, node
    print(("fixed point: " if fixed_point else "float64 S': ") + "; ".join(report))
    assert torch.equal(fake_logits.argmax(1), fused_logits.argmax(1))


def test_per_channel_weight_integers_reproduce_the_fake_quantized_weights(trained):
    fused, _ = fuse_network(trained)
    for name in ("conv1", "fc1"):
        cell = trained.cells[name]
        grid = cell.weight_quantizer.integer_grid(cell.weight.detach())
        w_int = fused.cells[name].weight.double()
        assert (grid.qmin, grid.qmax, grid.axis) == (-128, 127, 0)
        torch.testing.assert_close(grid.dequantize(w_int).float(),
                                   cell.weight_quantizer.fake_quantize(cell.weight).detach(),
                                   rtol=0, atol=0)


def test_fixed_point_parameters_are_written_to_the_weights_folder(trained, tmp_path):
    from n2q.quant.fusion import load_fused, save_fused

    fused, _ = fuse_network(trained)
    use_fixed_point(fused)
    folder = save_fused(fused, tmp_path / "weights_quantized")
    m0 = [int(float(v)) for v in (folder / "fc1_M0.syntxt").read_text().split()]
    shift = [int(float(v)) for v in (folder / "fc1_shift.syntxt").read_text().split()]
    assert len(m0) == len(shift) == 12
    assert all(2 ** 30 <= m < 2 ** 31 for m in m0) and all(0 <= n <= 62 for n in shift)
    scaling = fused.cells["fc1"].scaling
    for m, n, s in zip(m0, shift, scaling.tolist(), strict=True):
        assert abs(m * 2.0 ** -n - s) <= s * 2.0 ** -31
    # the folder rebuilds the same integer network, fixed point included
    again = load_fused(trained, folder)
    use_fixed_point(again)
    x = random_stimuli(64, 9, SHAPE)
    a, b = fused.forward_all(x), again.forward_all(x)
    assert all(torch.equal(a[n], b[n]) for n in fused.integer_nodes())


@pytest.mark.parametrize("fold", ["OneConv", "TwoConv"])
def test_folded_batchnorm_networks_fuse_with_the_batchnorm_as_a_shift(tmp_path, fold):
    """FoldBN: the weight grid already holds w*gamma/sigma, so the fused layer takes the
    BatchNorm as the shift beta - gamma*mu/sigma only (folds_batchnorm), not a second time."""
    text = textwrap.dedent(INI).replace(
        "NoBias=1\nActivationFunction=Linear\nQWeight=SimQAT\n",
        f"NoBias=1\nActivationFunction=Linear\nQWeight=SimQAT\nQWeight.FoldBN={fold}\n")
    assert f"QWeight.FoldBN={fold}" in text
    ini = tmp_path / "net.ini"
    ini.write_text(text)
    torch.manual_seed(0)
    net = build_network(load_config(ini), SHAPE)
    assert net.cells["conv2"].weight_quantizer.folds_batchnorm
    for _, q in quantizers(net):
        q.after_step(1)
    for name in ("conv1", "fc1", "fc2"):
        torch.nn.init.constant_(net.cells[name].bias, 0.1)
    train_briefly(net, SHAPE, "softmax", 5, steps=20, batch=16, lr=0.01, first_seed=200)
    with torch.no_grad():     # one inference pass: tracked weight ranges of the final statistics
        net.train()
        net(random_stimuli(16, 1, SHAPE))
        net.eval()
    fused, float_lines = fuse_network(net)
    assert float_lines == [] and fused.alias["bn2"] == "conv2"     # fused once, as a shift
    levels, fake_logits, fused_logits = _levels(net, fused, random_stimuli(200, 3, SHAPE))
    for node, (got, ref) in levels.items():
        diff = (got - ref).abs()
        assert diff.max() <= 1 and float((diff == 0).double().mean()) > 0.99, node
    assert torch.equal(fake_logits.argmax(1), fused_logits.argmax(1))
