"""N2D2's own model files build, with output shapes and parameter counts checked against
independent counts: N2D2's console log (LeNet), torchvision models where the topology is the
same, or the published architectures written out here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from n2q.config import load_config
from n2q.errors import UserError
from n2q.net import build_network


def build(reference: Path, name: str):
    cfg = load_config(reference / "n2d2-models" / name)
    sp = cfg["sp"]
    cfg.set_generated("sp", "_EpochSize", 1000)
    shape = (sp.int("NbChannels", 1), sp.int("SizeY"), sp.int("SizeX"))
    return build_network(cfg, shape, quantize=False)


def weights_only(model: torch.nn.Module) -> int:
    """Parameters of conv and linear weights (no biases, no BatchNorm)."""
    return sum(m.weight.numel() for m in model.modules()
               if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))


def test_lenet_matches_n2d2_console(reference):
    """Every layer's output dims and synapse count as N2D2 printed them for LeNet.ini."""
    net = build(reference, "LeNet.ini")
    log = (reference / "n2d2-run-LeNet" / "console.log").read_text()
    layers = re.findall(r"Layer: (\S+) \[(\w+)\(Frame\)\]\n(.*?)(?=Layer:|Target:)", log, re.S)
    assert [name for name, _, _ in layers] == list(net.cells)
    for name, kind, block in layers:
        cell = net.cells[name]
        assert cell.type == kind
        w, h, c = (int(v) for v in re.search(r"Outputs dims: (\d+) (\d+) (\d+)", block).groups())
        assert cell.out_shape == (c, h, w), name
        synapses = re.search(r"# (?:Shared )?[Ss]ynapses: (\d+)", block)
        if synapses:  # NoBias=1: the parameters are the synapses
            assert cell.nb_params() == int(synapses.group(1)), name
    total = int(re.search(r"Total number of synapses: (\d+)", log).group(1))
    assert net.nb_params() == total == 60570
    assert net.cells["conv2"].mask is not None  # LeNet's sparse conv2 mapping


def test_cifar10_against_a_plain_torch_model(reference):
    net = build(reference, "cifar-10.ini")
    layers, c = [], 3
    for width, drop in ((32, 0.2), (64, 0.3), (128, 0.4)):
        for _ in range(2):
            layers += [torch.nn.Conv2d(c, width, 3, padding=1), torch.nn.BatchNorm2d(width),
                       torch.nn.ReLU()]
            c = width
        layers += [torch.nn.MaxPool2d(2), torch.nn.Dropout(drop)]
    ref = torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(128 * 4 * 4, 10))
    assert net.nb_params() == sum(p.numel() for p in ref.parameters())
    assert net.cells["pool3"].out_shape == (128, 4, 4)
    assert net.cells["softmax"].out_shape == (10, 1, 1)


def test_mnist24_sparse_conv2(reference):
    net = build(reference, "mnist24_16c4s2_24c5s2_150_10.ini")
    assert net.cells["conv1"].out_shape == (16, 11, 11)  # floor((24 - 4 + 2) / 2)
    assert net.cells["conv2"].out_shape == (24, 4, 4)  # floor((11 - 5 + 2) / 2)
    # 90 ones in its Mapping(conv1) matrix, NoBias=1
    assert net.cells["conv2"].nb_params() == 90 * 25
    assert net.nb_params() == 4 * 4 * 16 + 90 * 25 + 24 * 4 * 4 * 150 + 150 * 10


@pytest.mark.parametrize("name,arch,extra", [
    ("ResNet-18.ini", "resnet18", 64 * 64),   # N2D2 adds a 1x1 projection to conv2.1
    ("ResNet-34.ini", "resnet34", 64 * 64),
    ("ResNet-50.ini", "resnet50", 0),
    ("ResNet-50-BN.ini", "resnet50", 2 * (256 + 512 + 1024 + 2048)),  # bn2..bn5
])
def test_resnets_against_torchvision(reference, name, arch, extra):
    import torchvision

    net = build(reference, name)
    tv = getattr(torchvision.models, arch)(weights=None)
    # convolutions without bias, Fc with bias (common.config NoBias=1, fc.config overrides)
    assert net.nb_params() == weights_only(tv) + tv.fc.bias.numel() + extra
    assert net.cells["conv1"].out_shape == (64, 112, 112)
    # N2D2's file pools 3x3/2 without padding: floor((112 - 3 + 2) / 2) = 55 (torchvision: 56)
    assert net.cells["pool1"].out_shape == (64, 55, 55)
    last_sum = [n for n in net.cells if n.endswith("_sum")][-1]
    assert net.cells[last_sum].out_shape == (tv.fc.in_features, 7, 7)
    assert net.cells["softmax"].out_shape == (1000, 1, 1)


def _mobilenet_v1(alpha: float, batchnorm: bool) -> tuple[int, list[tuple[int, int]]]:
    """(parameters, [(channels, size)] of the pointwise convs) of MobileNet v1 at 160x160."""
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
        [(1024, 2), (1024, 1)]
    c, size = int(32 * alpha), 80
    params = 3 * 3 * 3 * c + (2 * c if batchnorm else 0)
    shapes = []
    for width, stride in plan:
        out = int(width * alpha)
        size //= stride
        params += 9 * c + c * out + (2 * (c + out) if batchnorm else 0)
        shapes.append((out, size))
        c = out
    return params + c * 1000 + 1000, shapes


@pytest.mark.parametrize("name,batchnorm", [("MobileNet_v1.ini", False),
                                            ("MobileNet_v1_batchnorm.ini", True)])
def test_mobilenet_v1(reference, name, batchnorm):
    net = build(reference, name)
    params, shapes = _mobilenet_v1(0.5, batchnorm)
    assert net.nb_params() == params
    pointwise = [c for n, c in net.cells.items() if n.endswith("_1x1") and c.type == "Conv"]
    assert [(c.out_shape[0], c.out_shape[1]) for c in pointwise] == shapes
    depthwise = [c for n, c in net.cells.items() if n.endswith("_dw") and c.type == "Conv"]
    assert len(depthwise) == 13
    assert all(c.groups == c.in_shape[0] == c.out_shape[0] for c in depthwise)


def test_mobilenet_v2(reference):
    """The paper's (t, c, n, s) table at alpha 0.5 without channel rounding, written as N2D2's
    template does it (an expansion 1x1 conv even when t = 1, last conv 1280 wide)."""
    net = build(reference, "MobileNet_v2.ini")
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1)]
    c, size = 16, 80
    params = 3 * 3 * 3 * c
    for t, width, n, s in table:
        for i in range(n):
            out, hidden = int(width * 0.5), c * t
            params += c * hidden + 9 * hidden + hidden * out
            size //= s if i == 0 else 1
            c = out
    params += c * 1280 + 1280 * 1000 + 1000
    assert net.nb_params() == params
    assert net.cells["conv9"].out_shape == (1280, size, size) == (1280, 5, 5)


def test_squeezenet_v11_against_torchvision(reference):
    import torchvision

    net = build(reference, "SqueezeNet_v1.1.ini")
    tv = torchvision.models.squeezenet1_1(weights=None)
    assert net.nb_params() == weights_only(tv)  # N2D2's file: NoBias=1 everywhere
    # N2D2 floors where torchvision's pools use ceil_mode: 227 -> 113 -> 56 -> 27 -> 13
    size = 227
    for name, k in (("conv1", 3), ("pool1", 3), ("pool3", 3), ("pool5", 3)):
        size = (size - k + 2) // 2
        assert net.cells[name].out_shape[1:] == (size, size), name
    assert net.cells["fire9_e3x3"].out_shape == (256, 13, 13)
    assert net.cells["pool3"].out_shape == (128, 27, 27)  # per-input mapping with OffsetX


def test_vgg16_against_torchvision(reference):
    import torchvision

    net = build(reference, "VGG16.ini")
    tv = torchvision.models.vgg16(weights=None)
    assert net.nb_params() == weights_only(tv) + 4096  # only fc7 keeps its bias
    assert net.cells["pool5"].out_shape == (512, 7, 7)


def test_lenet_quant_has_a_clear_unknown_key_error(reference):
    with pytest.raises(UserError, match=r"LeNet_quant.ini:\d+: \[conv1\] "
                                        r"ActivationFunction.QuantizationLevels: unknown option"):
        build(reference, "LeNet_quant.ini")

