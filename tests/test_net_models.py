"""The model zoo (models/*.ini) builds, with sizes checked against independent references:
torchvision's models (same topology: weights copied over, same outputs), the published
architectures written out here, or hand counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from n2q.config import load_config
from n2q.net import build_network

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions: torch's threads only contend on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, quantize: bool = False, size: int | None = None):
    """The model for its [sp] size, or for size x size (the global pools follow)."""
    cfg = load_config(MODELS / name)
    cfg.set_generated("sp", "_EpochSize", 1000)
    sp = cfg["sp"]
    shape = (sp.int("NbChannels", 1), size or sp.int("SizeY"), size or sp.int("SizeX"))
    return build_network(cfg, shape, quantize=quantize)


def test_every_model_is_tested():
    tested = {"LeNet.ini", "LeNet_SAT.ini", "cifar-10.ini", "ResNet-18.ini", "ResNet-50.ini",
              "MobileNet_v1.ini", "MobileNet_v2.ini"}
    assert {p.name for p in MODELS.glob("*.ini")} == tested


@pytest.mark.parametrize("name", ["LeNet.ini", "LeNet_SAT.ini"])
def test_lenet(name):
    """Seed 004's LeNet: conv/BN/pool x2, conv3 + BN + dropout, fc1, dropout, fc2."""
    net = build(name)
    assert [c.type for c in net.cells.values()] == [
        "Conv", "BatchNorm", "Pool", "Conv", "BatchNorm", "Pool", "Conv", "BatchNorm",
        "Dropout", "Fc", "Dropout", "Fc", "Softmax"]
    shapes = {n: c.out_shape for n, c in net.cells.items()}
    assert shapes["conv1"] == (6, 28, 28) and shapes["pool1"] == (6, 14, 14)
    assert shapes["conv2"] == (16, 10, 10) and shapes["pool2"] == (16, 5, 5)
    assert shapes["conv3"] == (120, 1, 1) and shapes["fc2"] == (10, 1, 1)
    convs = 5 * 5 * 6 + 6 * 25 * 16 + 16 * 25 * 120  # NoBias=1
    assert net.nb_params() == convs + 2 * (6 + 16 + 120) + 120 * 84 + 84 * 10


def test_lenet_sat_attaches_quantizers():
    pytest.importorskip("n2q.quant")
    net = build("LeNet_SAT.ini", quantize=True)
    for name in ("conv1", "conv2", "conv3", "fc1", "fc2"):
        assert net.cells[name].weight_quantizer is not None, name
    for name in ("bn1", "bn2", "bn3"):
        assert net.cells[name].act_quantizer is not None, name
    assert net(torch.randn(2, 1, 32, 32))["softmax"].shape == (2, 10, 1, 1)


def test_cifar10_against_a_plain_torch_model():
    net = build("cifar-10.ini")
    layers, c = [], 3
    for width in (64, 128, 256):
        for _ in range(2):
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU()]
            c = width
        layers += [nn.MaxPool2d(2)]
    ref = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))
    assert net.nb_params() == sum(p.numel() for p in ref.parameters())
    _copy_and_compare(net, ref, torch.randn(2, 3, 32, 32))


def _copy_and_compare(net, ref: nn.Module, x: torch.Tensor) -> None:
    """Copy ref's weights into the n2q cells in order, then compare the outputs (eval)."""
    theirs = [m for m in ref.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear)]
    ours = [c for c in net.cells.values() if c.type in ("Conv", "BatchNorm", "Fc")]
    assert [c.type for c in ours] == [
        {nn.Conv2d: "Conv", nn.BatchNorm2d: "BatchNorm", nn.Linear: "Fc"}[type(m)]
        for m in theirs]
    with torch.no_grad():
        for cell, module in zip(ours, theirs, strict=True):
            assert cell.weight.shape == module.weight.shape
            cell.weight.copy_(module.weight)
            if module.bias is not None:
                cell.bias.copy_(module.bias)
            else:
                assert cell.bias is None
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                cell.running_mean.copy_(module.running_mean)
                cell.running_var.copy_(module.running_var)
                assert cell.eps == module.eps and cell.momentum == module.momentum
    net.eval()
    ref.eval()
    with torch.no_grad():
        (ours_out,) = net(x).values()
        torch.testing.assert_close(ours_out.flatten(1), ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,arch", [("ResNet-18.ini", "resnet18"),
                                       ("ResNet-50.ini", "resnet50"),
                                       ("MobileNet_v2.ini", "mobilenet_v2")])
def test_same_network_as_torchvision(name, arch):
    import torchvision

    ref = getattr(torchvision.models, arch)(weights=None)
    net = build(name)
    assert net.nb_params() == sum(p.numel() for p in ref.parameters())
    assert net.cells["softmax"].out_shape == (1000, 1, 1)
    if arch == "resnet50":
        return  # same count and layer order as resnet18's check; the forward costs seconds
    torch.manual_seed(0)
    _copy_and_compare(build(name, size=64), ref, torch.randn(2, 3, 64, 64))


def test_mobilenet_v1():
    """Howard et al. 2017, table 1, alpha 1: 4.2 M parameters (BatchNorm included here)."""
    net = build("MobileNet_v1.ini")
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
        [(1024, 2), (1024, 1)]
    c, size = 32, 112
    params = 3 * 3 * 3 * c + 2 * c
    for width, stride in plan:
        size //= stride
        params += 9 * c + 2 * c + c * width + 2 * width
        c = width
    assert net.nb_params() == params + 1024 * 1000 + 1000
    assert net.cells["pw13_bn"].out_shape == (1024, 7, 7) and size == 7
    assert all(net.cells[f"dw{i}"].groups == net.cells[f"dw{i}"].in_shape[0]
               for i in range(1, 14))
