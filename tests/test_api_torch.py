"""n2q.quantize_model: n2q's quantizers on any torch.nn.Module (torchvision's resnet18).

References: the SAT formulas of spec/quant.md computed here on the layer's own weights
(DoReFa levels of tanh(w)/max|tanh(w)|, CG-PACT clipping), the INI path's Conv cell with the
same keys on the same inputs, and the model's own state-dict names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import n2q
from n2q.config import load_config
from n2q.net import build_network
from n2q.quant import ACT_QUANTIZERS, WEIGHT_QUANTIZERS
from n2q.quant import registry as n2q_registry

torchvision = pytest.importorskip("torchvision")


def resnet18_w4a4() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    return n2q.quantize_model(
        model, weight=n2q.QWeight("SAT", range=15), act=n2q.QAct("SAT", range=15),
        first=n2q.QWeight("SAT", range=255), last=n2q.QWeight("SAT", range=255,
                                                             apply_scaling=True),
        example_input=torch.zeros(1, 3, 32, 32))


def sat_levels(w: torch.Tensor, r: int) -> torch.Tensor:
    """spec/quant.md, SAT weights: 2*round(R*(t/M + 1)/2)/R - 1, t = tanh(w), M = max|t|."""
    t = torch.tanh(w.double())
    return (2 * torch.round(r * (t / t.abs().max() + 1) / 2) / r - 1).float()


def test_resnet18_keeps_its_names_and_gets_one_quantizer_per_place() -> None:
    plain = torchvision.models.resnet18(num_classes=10)
    model = resnet18_w4a4()
    names = set(model.state_dict())
    assert set(plain.state_dict()) <= names
    assert {n for n in names - set(plain.state_dict())} == {
        n for n in names if ".act_quantizers." in n}
    # torchvision's BasicBlock runs self.relu twice: two quantizers, one per place
    assert len(model.layer1[0].relu.act_quantizers) == 2
    assert len(model.relu.act_quantizers) == 1
    weights = [q for name, q in n2q.quantized_layers(model) if "[" not in name]
    assert len(weights) == 21            # 20 convolutions (3 downsample) + fc
    assert model.conv1.weight_quantizer.range == 255 and model.fc.weight_quantizer.range == 255
    assert model.layer2[0].conv1.weight_quantizer.range == 15
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_conv_and_relu_equal_the_ini_cell_and_the_formulas(tmp_path: Path) -> None:
    model = resnet18_w4a4()
    conv, relu = model.layer1[0].conv1, model.layer1[0].relu
    ini = tmp_path / "conv.ini"
    ini.write_text("[sp]\nSizeX=8\nSizeY=8\nNbChannels=64\n"
                   "[conv]\nInput=sp\nType=Conv\nNbOutputs=64\nKernelDims=3 3\nPaddingDims=1 1\n"
                   "NoBias=1\nActivationFunction=Rectifier\nQWeight=SAT\nQWeight.Range=15\n"
                   "QAct=SAT\nQAct.Range=15\n[conv.Target]\n")
    cell = build_network(load_config(ini), (64, 8, 8)).cells["conv"]
    with torch.no_grad():
        cell.weight.copy_(conv.weight)
        relu.act_quantizers[0].alpha.fill_(1.5)
        cell.act_quantizer.alpha.fill_(1.5)
    x = torch.randn(2, 64, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected_w = sat_levels(conv.weight, 15)
        assert len(torch.unique(expected_w)) <= 16
        torch.testing.assert_close(cell.quantized_weight(), expected_w, rtol=0, atol=1e-6)
        ref_conv = F.conv2d(x, expected_w, None, 1, 1)
        torch.testing.assert_close(conv(x), ref_conv, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cell.op(x), conv(x), rtol=0, atol=0)
        # CG-PACT: alpha * round(R * clamp(y, 0, alpha) / alpha) / R after the ReLU
        y = relu(conv(x).clone())
        ref = 1.5 * torch.round(15 * torch.clamp(ref_conv, 0, 1.5) / 1.5) / 15
        assert (y - ref).abs().max() < 1e-4
        torch.testing.assert_close(cell(x), y, rtol=0, atol=0)


class Tiny(nn.Module):
    """A model of the user's own: one ReLU module used twice, functional flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.act(self.conv(x)) - 0.1).flatten(1))


@pytest.mark.parametrize("weight_method", sorted(WEIGHT_QUANTIZERS))
@pytest.mark.parametrize("act_method", sorted(ACT_QUANTIZERS))
def test_every_registered_method_quantizes_a_torch_model(weight_method: str,
                                                         act_method: str) -> None:
    torch.manual_seed(0)
    model = n2q.quantize_model(Tiny(), weight=n2q.QWeight(weight_method, range=15),
                               act=n2q.QAct(act_method, range=15),
                               example_input=torch.zeros(1, 3, 6, 6))
    assert len(model.act.act_quantizers) == 2
    x = torch.rand(4, 3, 6, 6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(2):
        loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    learned = [k for k, v in model.state_dict().items() if k.startswith("conv.")
               and v.is_floating_point() and (k not in before or not torch.equal(v, before[k]))]
    assert learned     # the weight, or the quantizer's own parameters when it replaces it
    model.eval()
    with torch.no_grad():   # the conv computes with the weights of the quantizer's grid
        q = model.conv.weight_quantizer
        grid, wq = q.integer_grid(model.conv.weight), q.fake_quantize(model.conv.weight)
        x = torch.rand(2, 3, 6, 6)
        torch.testing.assert_close(model.conv(x), F.conv2d(x, wq, model.conv.bias, padding=1),
                                   rtol=1e-5, atol=1e-5)
    assert grid is not None and grid.levels <= 16
    ints = grid.integers(wq)
    torch.testing.assert_close(grid.dequantize(ints), wq.double(), rtol=1e-5, atol=1e-6)
    assert ints.min() >= grid.qmin and ints.max() <= grid.qmax


def test_misuse_is_refused_with_one_line() -> None:
    with pytest.raises(n2q.UserError, match="expected an n2q.QWeight"):
        n2q.quantize_model(Tiny(), weight=n2q.QAct("SAT"))
    with pytest.raises(n2q.UserError, match="give weight="):
        n2q.quantize_model(Tiny())
    with pytest.raises(n2q.UserError, match=r"QWeight\.Range"):
        n2q.QWeight("SAT", range=0)
    model = n2q.quantize_model(Tiny(), act=n2q.QAct("SAT"))     # no example_input
    with pytest.raises(n2q.UserError, match="example_input"):
        model(torch.zeros(1, 3, 6, 6))


def cifar_folder(root: Path, per_file: int = 8, n_test: int = 10) -> Path:
    """cifar-10-batches-bin: data_batch_1..5.bin, test_batch.bin (records: label byte, R, G,
    B planes of 32x32), one dominant colour per class."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)

    def records(n: int) -> bytes:
        labels = rng.integers(0, 10, n)
        out = []
        for k in labels:
            img = rng.integers(0, 60, (3, 32, 32))
            img[k % 3] += 60 + 15 * k
            out.append(bytes([int(k)]) + img.astype(np.uint8).tobytes())
        return b"".join(out)

    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(records(per_file))
    (folder / "test_batch.bin").write_bytes(records(n_test))
    return root


@pytest.mark.slow
def test_resnet18_sat_w4a4_learns_from_a_cifar_folder(tmp_path: Path) -> None:
    root = cifar_folder(tmp_path)
    n2q.seed(2)
    sp = n2q.Provider(n2q.Database("CIFAR10", data_path=root / "cifar-10-batches-bin"),
                      (32, 32, 3), batch_size=20)
    model = resnet18_w4a4()
    alphas = [q.alpha.item() for _, q in n2q.quantized_layers(model) if hasattr(q, "alpha")]
    x, y = next(iter(sp.loader("Learn")))
    assert x.shape == (20, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    # Adam: SAT's weight gradient is scaled by 1/max|tanh(w)|, large for torchvision's small
    # initial weights; Adam's step does not depend on the gradient's scale
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    model.train()
    for _ in range(5):                  # a few steps on one batch: it must fit it better
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2
    moved = [q.alpha.item() for _, q in n2q.quantized_layers(model) if hasattr(q, "alpha")]
    assert moved != alphas


class Probe(n2q_registry.ActQuantizer):
    """Identity activation quantizer recording the lifecycle calls it gets (this test only)."""

    calls: list[tuple] = []

    @classmethod
    def from_section(cls, sec, cell=None) -> Probe:
        return cls()

    def bind(self, cell, net) -> None:
        Probe.calls.append(("bind", cell.name, cell.type, tuple(cell.out_shape),
                            net.cells[cell.name] is cell))

    def plan(self, plan) -> None:
        Probe.calls.append(("plan", plan.total_epochs))

    def start_epoch(self, epoch: int) -> None:
        Probe.calls.append(("start_epoch", epoch))

    def after_step(self, step: int) -> None:
        Probe.calls.append(("after_step", step))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_lifecycle_of_a_quantized_torch_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ACT_QUANTIZERS, "Probe", Probe)
    Probe.calls = []
    model = n2q.quantize_model(Tiny(), act=n2q.QAct("Probe"),
                               example_input=torch.zeros(1, 3, 6, 6))
    # bound once per place, with the shape seen there and the network it belongs to
    assert Probe.calls == [("bind", "act[0]", "Activation", (4, 6, 6), True),
                           ("bind", "act[1]", "Activation", (4, 6, 6), True)]
    Probe.calls = []
    life = n2q.lifecycle(model)
    life.plan(n2q.RunPlan(total_epochs=2), 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in (1, 2):
        life.start_epoch(epoch)
        loss = model(torch.rand(2, 3, 6, 6)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        life.after_optimizer(epoch)
    assert Probe.calls == [("plan", 2)] * 2 + [("start_epoch", 1)] * 2 + [
        ("after_step", 1)] * 2 + [("start_epoch", 2)] * 2 + [("after_step", 2)] * 2
    with pytest.raises(n2q.UserError, match="no n2q quantizer"):
        n2q.lifecycle(Tiny())
