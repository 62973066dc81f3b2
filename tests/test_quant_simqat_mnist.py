"""Seed 001 on the real MNIST of $N2Q_TEST_DATA: MindSpore's LeNet5 float and SimQAT 8-bit
(configs/LeNet5.ini, configs/LeNet5_SimQAT.ini: their provider, network, solvers and quant
delay) learned in the same test with the same seed, initial weights and batch order, through
n2q's optimizer and the quantizer lifecycle (after_step counts the quant delay); then the
SimQAT network fused to integers (uint8 activations with zero points, int8 per-channel
weights, int32 biases, fixed-point requantization) against its fake-quantized self.

Kept short for a 2-core machine: the data is the 8 000 / 2 000 digit split of
$N2Q_TEST_DATA/mnist (250 steps per epoch of 32, the quant delay of 900 steps is 3.6 epochs),
EPOCHS epochs each. Golden Stick reports 98.82% -> 98.94% (+0.12) on the full MNIST; the issue
asks SimQAT within 0.2 points of float.

The fused network reads the provider's [0, 1] stimuli on the 1/255 grid (fusion.md); the
seed's normalization (x/255 - 0.1307)/0.3081 has a fractional zero point (33.3285 pixels) that
the fusion does not take as input. The integer check therefore learns the same SimQAT LeNet5
without the normalization transformation (N2D2's [0, 1] input), He-initialized, 5 epochs.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from n2q.config import load_config
from n2q.data import make_provider
from n2q.net import build_network
from n2q.quant.fixedpoint import use_fixed_point
from n2q.quant.fusion import fuse_network
from n2q.train.lifecycle import Lifecycle
from n2q.train.solvers import make_optimizer

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
EPOCHS = int(os.environ.get("N2Q_SIMQAT_MNIST_EPOCHS", "10"))
INTEGER_EPOCHS = 5      # quantized from step 900 (epoch 3.6) on


def _learn(ini: Path, epochs: int = EPOCHS) -> tuple:
    cfg = load_config(ini)
    sp = make_provider(cfg, seed=1)
    torch.manual_seed(1)
    net = build_network(cfg, sp.size)
    optimizer = make_optimizer(net, sp.batch_size)
    lifecycle = Lifecycle(net)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        lifecycle.start_epoch(epoch + 1)
        for x, y in sp.loader("Learn", shuffle=True, epoch=epoch):
            F.cross_entropy(net(x)["softmax"].flatten(1), y).backward()
            optimizer.step()
            lifecycle.after_optimizer(optimizer.steps)
    net.eval()
    return net, sp, time.perf_counter() - start


@torch.no_grad()
def _rate(model, sp) -> float:
    ok = n = 0
    for x, y in sp.loader("Test", shuffle=False):
        ok += int((model(x)["softmax"].flatten(1).argmax(1) == y).sum())
        n += len(y)
    return 100.0 * ok / n


@torch.no_grad()
def _compare(net, fused, sp) -> tuple[dict, int, int]:
    """Per integer node: (equal, one level off, more) counts; same class count; stimuli."""
    counts = {node: [0, 0, 0] for node in fused.integer_nodes()}
    same = total = 0
    for x, _ in sp.loader("Test", shuffle=False):
        fake_all, fused_all = net.forward_all(x), fused.forward_all(x)
        for node, c in counts.items():
            domain = fused.domains[node]
            ref = torch.round(fake_all[fused.source_cell(node)].double() / domain.scale)
            diff = (fused_all[node].double() - ref - domain.zero_point).abs()
            c[0] += int((diff == 0).sum())
            c[1] += int((diff == 1).sum())
            c[2] += int((diff > 1).sum())
        a = net(x)["softmax"].flatten(1).argmax(1)
        b = fused(x)["softmax"].flatten(1).argmax(1)
        same += int((a == b).sum())
        total += len(x)
    return counts, same, total


@pytest.mark.slow
def test_lenet5_simqat_on_mnist(test_data: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    if not (test_data / "mnist").is_dir():
        pytest.skip(f"no mnist/ in {test_data}")
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # a tiny network on a shared machine: one thread is faster
    try:
        _run(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _run(tmp_path: Path) -> None:
    float_net, sp, t_float = _learn(CONFIGS / "LeNet5.ini")
    simqat_net, _, t_simqat = _learn(CONFIGS / "LeNet5_SimQAT.ini")
    rate_float, rate_simqat = _rate(float_net, sp), _rate(simqat_net, sp)
    print(f"\nLeNet5 {EPOCHS} epochs: float {rate_float:.2f}% ({t_float:.0f} s), SimQAT "
          f"{rate_simqat:.2f}% ({t_simqat:.0f} s): gap {rate_simqat - rate_float:+.2f}")
    assert rate_simqat >= rate_float - 0.2

    # the integer network: the same SimQAT LeNet5 on [0, 1] inputs, He-initialized (MindSpore's
    # sigma 0.01 on [0, 1] inputs stays at chance for these few epochs)
    text = (CONFIGS / "LeNet5_SimQAT.ini").read_text()
    text, found = re.subn(r"\[sp\.Transformation-normalize\][^\[]*", "", text)
    text, fillers = re.subn(r"WeightsFiller=NormalFiller\nWeightsFiller.StdDev=[0-9.]+",
                            "WeightsFiller=HeFiller", text)
    assert found == 1 and fillers == 2
    ini = tmp_path / "LeNet5_SimQAT_01.ini"
    ini.write_text(text)
    net01, sp01, _ = _learn(ini, INTEGER_EPOCHS)
    fused, float_lines = fuse_network(net01)
    assert float_lines == []            # every cell fused (the Softmax is float by design)
    use_fixed_point(fused)
    counts, same, total = _compare(net01, fused, sp01)
    rate_fake, rate_int = _rate(net01, sp01), _rate(fused, sp01)
    report = "; ".join(f"{node} {c[0] / sum(c):.5f} equal, {c[1] / sum(c):.5f} off by one"
                       for node, c in counts.items())
    print(f"SimQAT on [0, 1] inputs: fake-quant {rate_fake:.2f}%, integer {rate_int:.2f}%; "
          f"same class on {same}/{total}; {report}")
    assert rate_fake > 90.0                 # a network that learned, not a constant
    assert all(c[2] == 0 for c in counts.values()), counts
    assert same == total and rate_int == rate_fake
