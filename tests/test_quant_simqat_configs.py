"""configs/LeNet5*.ini and configs/ResNet-50_CIFAR10*.ini: the seed's networks as written."""

from __future__ import annotations

from pathlib import Path

from n2q.config import load_config
from n2q.net import build_network
from n2q.train.solvers import check_network_solvers

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _build(name: str, shape, epoch_size: int | None = None):
    cfg = load_config(CONFIGS / name)
    if epoch_size:
        cfg.set_generated("sp", "_EpochSize", epoch_size)
    net = build_network(cfg, shape)
    check_network_solvers(net)
    return net


def test_lenet5_float_and_simqat_are_mindsporess_network():
    float_net = _build("LeNet5.ini", (1, 32, 32))
    q_net = _build("LeNet5_SimQAT.ini", (1, 32, 32))
    # conv 6 and 16 5x5 without bias, fc 400-120-84-10: 61,706 - 22 conv biases = 61,684
    assert float_net.nb_params() == q_net.nb_params() == 61684
    assert [c.out_shape for c in float_net.cells.values()] == [
        c.out_shape for c in q_net.cells.values()]
    quantized = {n: c for n, c in q_net.cells.items() if c.weight_quantizer is not None}
    assert list(quantized) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    for cell in quantized.values():
        w, a = cell.weight_quantizer.settings, cell.act_quantizer.settings
        assert (w.NAME, w.range, w.per_channel, w.symmetric, w.quant_delay) == (
            "SimQAT", 255, True, True, 900)
        assert (a.NAME, a.range, a.per_channel, a.symmetric, a.quant_delay) == (
            "SimQAT", 255, False, False, 900)
        assert w.fold_bn == "0" and not w.ema and not a.ema
    assert all(c.weight_quantizer is None and c.act_quantizer is None
               for c in float_net.cells.values())


def test_resnet50_cifar10_float_and_simqat():
    float_net = _build("ResNet-50_CIFAR10.ini", (3, 224, 224), 50000)
    q_net = _build("ResNet-50_CIFAR10_SimQAT.ini", (3, 224, 224), 50000)
    # ResNet-50 with a 10-class Fc: 23,528,522 parameters (torchvision's count for 10 classes)
    assert float_net.nb_params() == q_net.nb_params() == 23528522
    convs = [c for c in q_net.cells.values() if c.type in ("Conv", "Fc")]
    assert len(convs) == 54 and all(c.weight_quantizer is not None for c in convs)
    acts = [n for n, c in q_net.cells.items() if c.act_quantizer is not None]
    assert len(acts) == 53 + 16      # every BatchNorm and every residual Sum
