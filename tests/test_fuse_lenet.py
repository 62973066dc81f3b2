"""Seed 004's hand-made LeNet with BatchNorm on the real MNIST, through the user's workflow
(SAT, and the same LeNet with LSQ quantizers fused by ``-qat-fuse``):

    n2q configs/LeNet_SAT_clamp.ini -learn-epoch 1
    cp -r weights_validation weights_clamped
    n2q configs/LeNet_SAT_W4A4.ini -learn-epoch 1 -w weights_clamped
    n2q configs/LeNet_SAT_W4A4.ini -test -qat-sat -w weights_validation

The integer network rebuilt from the ``weights_quantized/`` it wrote must give the same class
as the fake-quant network (the INI's network with ``weights_validation``) on all 2000 test
digits (both fed the same 8-bit images: the fused network's input is round(255 x) by
definition), hence the same recognition rate (the one the command printed), with integer
activations in [0, R] and a share of activations one level off (rounding ties) below 1e-4.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from n2q import cli
from n2q.config import load_config
from n2q.data import make_provider
from n2q.io.weights import load_weights
from n2q.net import build_network
from n2q.quant.fuse import FusionCheck, fuse_sat, load_fused
from n2q.quant.fusion.check import tied_top

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def n2q(*argv: str) -> None:
    assert cli.main([str(a) for a in argv]) == 0, argv


def compare(net, fused, provider) -> dict[str, float]:
    """Fake-quant `net` against `fused` on the 2000 test digits."""
    same = ties = correct_fake = correct_fused = total = differing = levels = 0
    classes: set[int] = set()
    max_logit_diff = 0.0
    check = FusionCheck()  # n2q's own report, checked against the counts below
    with torch.no_grad():
        for x, label in provider.loader("Test", shuffle=False):
            check.update(net, fused, x)
            x8 = torch.round(x.clamp(0, 1) * 255) / 255  # the fused network's input grid
            fake_all, fused_all = net.forward_all(x8), fused.forward_all(x8)
            assert fused.check_integer_outputs(fused_all) == []
            for node in fused.integer_nodes():
                domain = fused.domains[node]
                source, units = fused.source_cell(node), domain.range / domain.alpha
                ref = torch.round(fake_all[source] * units)
                differing += int((fused_all[node].float() != ref).sum())
                levels += ref.numel()
            fake = net(x8)["softmax"].flatten(1)
            logits = fused(x8)["softmax"].flatten(1)
            max_logit_diff = max(max_logit_diff, float((fake - logits).abs().max()))
            agree = fake.argmax(1) == logits.argmax(1)
            same += int(agree.sum())
            # the exact (integer) logits of the fused network tie where float32 noise of the
            # fake-quant network picks one of the tied classes
            ties += int((~agree & tied_top(logits, fake.argmax(1))).sum())
            classes.update(logits.argmax(1).tolist())
            correct_fake += int((fake.argmax(1) == label).sum())
            correct_fused += int((logits.argmax(1) == label).sum())
            total += len(label)
    assert (check.total, check.same_class, check.levels, check.ties) == (total, same, levels, ties)
    assert check.differing == differing and not check.bad_nodes
    assert check.max_logit_diff == pytest.approx(max_logit_diff)
    print("\n" + check.line())
    return dict(total=total, same=same, ties=ties, fake=correct_fake / total,
                fused=correct_fused / total, share=differing / levels, differing=differing,
                levels=levels, max_logit_diff=max_logit_diff, classes=len(classes))


@pytest.mark.slow
def test_lenet_w4a4_mnist_qat_sat_workflow(
    test_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    monkeypatch.chdir(tmp_path)
    n2q(CONFIGS / "LeNet_SAT_clamp.ini", "-learn-epoch", 1)
    shutil.copytree("weights_validation", "weights_clamped")
    n2q(CONFIGS / "LeNet_SAT_W4A4.ini", "-learn-epoch", 1, "-w", "weights_clamped")
    capsys.readouterr()
    n2q(CONFIGS / "LeNet_SAT_W4A4.ini", "-test", "-qat-sat", "-w", "weights_validation")
    report = capsys.readouterr()

    # fc1 has no activation quantizer in the seed: its output is float, so fc1.drop and fc2
    # run in float (fc1 itself accumulates in integers); nothing else may stay float.
    notices = re.findall(r"Notice: (\S+): .*it stays float", report.out + report.err)
    assert notices == ["fc1.drop", "fc2"], report
    printed = float(re.search(r"Final recognition rate: ([\d.]+)%", report.out).group(1))
    written = {p.name for p in Path("weights_quantized").iterdir()}
    for conv in ("conv1", "conv2", "conv3"):
        assert {f"{conv}_{k}.syntxt" for k in ("weights", "biases", "scaling", "clip")} <= written
    assert {"fc1_weights.syntxt", "fc1_scaling.syntxt", "fc2_weights.syntxt"} <= written
    assert "fc1_clip.syntxt" not in written  # float output: no clip
    assert not any(name.startswith("bn") for name in written)
    dot = Path("LeNet_SAT_W4A4.ini.dot").read_text()
    assert "bn1" not in dot and "BatchNorm" not in dot and "A:SAT" not in dot
    assert Path("LeNet_SAT_W4A4.ini.png").stat().st_size > 0

    cfg = load_config(CONFIGS / "LeNet_SAT_W4A4.ini")
    provider = make_provider(cfg, seed=1)
    net = build_network(cfg, provider.size)
    load_weights(net, "weights_validation", ignore_missing=False)
    net.eval()
    fused = load_fused(net, "weights_quantized")  # what the command wrote
    x, _ = next(iter(provider.loader("Test", shuffle=False)))
    with torch.no_grad():  # the folder holds exactly the network fuse_sat makes
        assert torch.equal(fused(x)["softmax"], fuse_sat(net)[0](x)["softmax"])
    stats = compare(net, fused, provider)
    print(
        f"\nLeNet W4A4, {stats['total']} test digits: fake-quant {100 * stats['fake']:.2f}%, "
        f"fused {100 * stats['fused']:.2f}% (printed {printed}%), same class "
        f"{stats['same']}/{stats['total']}, max |logit diff| {stats['max_logit_diff']:.3g}, "
        f"levels off by one {stats['differing']}/{stats['levels']}"
    )
    assert stats["total"] == 2000
    assert stats["same"] == stats["total"]
    assert stats["fake"] == stats["fused"]
    assert printed == pytest.approx(100 * stats["fused"], abs=0.01)
    assert stats["fused"] > 0.3  # one epoch of each phase did learn (chance: 0.1)
    assert stats["share"] < 1e-4
    # A flipped level (a rounding tie) moves the float logits downstream by a fraction of a
    # level times fc1/fc2's weights; without flip they agree to float tolerance.
    if stats["differing"] == 0:
        assert stats["max_logit_diff"] < 1e-4


@pytest.mark.slow
def test_lenet_lsq_w4a4_mnist_qat_fuse_workflow(
    test_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """LSQ W4A4 (configs/LeNet_LSQ_W4A4.ini), one epoch from scratch, then
    ``-test -qat-fuse``: every Conv/Fc and its BatchNorm fused, read through the LSQ
    quantizers' integer grids (weights [-8, 7] * s, activations [0, 15] * s)."""
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    monkeypatch.chdir(tmp_path)
    ini = CONFIGS / "LeNet_LSQ_W4A4.ini"
    n2q(ini, "-learn-epoch", 1, "-seed", 1)
    capsys.readouterr()
    n2q(ini, "-test", "-qat-fuse", "-w", "weights_validation")
    report = capsys.readouterr()
    assert "it stays float" not in report.out + report.err   # only the Softmax is float
    printed = float(re.search(r"Final recognition rate: ([\d.]+)%", report.out).group(1))
    written = {p.name for p in Path("weights_quantized").iterdir()}
    for layer in ("conv1", "conv2", "conv3", "fc1"):
        assert {f"{layer}_{k}.syntxt" for k in ("weights", "biases", "scaling", "clip")} <= written
    assert {"fc2_weights.syntxt", "fc2_scaling.syntxt"} <= written
    assert "fc2_clip.syntxt" not in written and not any(n.startswith("bn") for n in written)

    cfg = load_config(ini)
    provider = make_provider(cfg, seed=1)
    net = build_network(cfg, provider.size)
    load_weights(net, "weights_validation", ignore_missing=False)
    net.eval()
    fused = load_fused(net, "weights_quantized")
    for node in ("conv1", "conv2", "conv3", "fc1"):
        w = fused.cells[node].weight            # W' = the LSQ levels: [-8, 7], 8-bit [-128, 127]
        low, high = (-128, 127) if node == "conv1" else (-8, 7)
        assert w.dtype == torch.int8 and low <= int(w.min()) and int(w.max()) <= high, node
        assert fused.domains[node].range == 15 and fused.domains[node].qmin == 0, node
    stats = compare(net, fused, provider)
    print(f"\nLeNet LSQ W4A4, {stats['total']} test digits: fake-quant "
          f"{100 * stats['fake']:.2f}%, fused {100 * stats['fused']:.2f}% (printed {printed}%), "
          f"same class {stats['same']}/{stats['total']} ({stats['ties']} exact ties), "
          f"max |logit diff| {stats['max_logit_diff']:.3g}, levels off by one "
          f"{stats['differing']}/{stats['levels']}")
    assert stats["total"] == 2000
    assert stats["same"] + stats["ties"] == stats["total"]
    assert printed == pytest.approx(100 * stats["fused"], abs=0.01)
    assert stats["classes"] > 2     # a network that learned something: not one class for all
    assert stats["share"] < 1e-4
