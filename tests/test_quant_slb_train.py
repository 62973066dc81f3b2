"""SLB recipes learning for real (slow): the LeNet-BN MNIST recipe at W1, W2 and W4 against the
float network trained the same way, and the ResNet-18 CIFAR-10 recipe on a tiny CIFAR folder.

The MNIST gaps are printed (the issue's goal: W4 and W2 within 0.5 point of float, W1 within
1.5); what is asserted is what the method guarantees whatever the seed: the weights a SLB run
saves take only the R+1 candidate values, the console announced the temperatures and the
one-hot switch, the one-hot network learned (far above chance), and the float network loading
the SLB folder (one-hot weights in ``<cell>_weights.syntxt``) scores exactly the same.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from n2q.config import load_config
from n2q.data import make_provider
from n2q.io.weights import load_weights
from n2q.net import build_network
from n2q.quant.protocol import RunPlan, quantizers
from n2q.quant.slb import candidates
from n2q.train.solvers import make_optimizer
from n2q.train.targets import make_targets

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
EPOCHS = int(os.environ.get("N2Q_SLB_MNIST_EPOCHS", "3"))
SCORE = re.compile(r"Final recognition rate: ([0-9.]+)%")
RANGES = {"W1": 1, "W2": 3, "W4": 15}


def _float(text: str) -> str:
    """The recipe without its SLB keys: the same LeNet-BN, float weights."""
    kept = [ln for ln in text.splitlines() if not re.match(r"\s*QWeight", ln)]
    return "\n".join(kept) + "\n"


def _keys(text: str) -> list[str]:
    """The lines that are not comments, comments cut: what the INI says."""
    lines = (ln.split(";", 1)[0].strip() for ln in text.splitlines())
    return [ln for ln in lines if ln]


def _run(workdir: Path, ini_text: str, *options: str) -> tuple[float, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "net.ini").write_text(ini_text)
    cmd = [sys.executable, "-m", "n2q", "net.ini", "-seed", "1", "-test", *options]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    scores = SCORE.findall(out)
    assert scores, out[-3000:]
    return float(scores[-1]), out


def _syntxt_values(path: Path) -> np.ndarray:
    return np.array([float(v) for v in path.read_text().split()])


@pytest.mark.slow
def test_lenet_bn_slb_recipes_on_mnist(test_data: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not (test_data / "mnist").is_dir():
        pytest.skip(f"no mnist/ in {test_data}")
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    w4 = (CONFIGS / "LeNet_BN_SLB_W4.ini").read_text()
    learn = ("-learn-epoch", str(EPOCHS))
    baseline, _ = _run(tmp_path / "float", _float(w4), *learn)
    gaps = {}
    for name, r in RANGES.items():
        text = (CONFIGS / f"LeNet_BN_SLB_{name}.ini").read_text()
        assert f"QWeight.Range={r}" in _keys(text) and _keys(_float(text)) == _keys(_float(w4))
        score, out = _run(tmp_path / name, text, *learn)
        gaps[name] = baseline - score
        print(f"LeNet-BN MNIST, {EPOCHS} epochs: float {baseline:.2f}%, SLB {name} {score:.2f}% "
              f"(gap {gaps[name]:+.2f})")
        assert score > 50.0                        # the one-hot network learned (chance: 10%)
        assert f"SLB epoch 1/{EPOCHS} (3 cells): temperature" in out
        assert f"SLB epoch {EPOCHS}/{EPOCHS} (3 cells): the weights are one-hot" in out
        weights = tmp_path / name / "weights"
        allowed = candidates(r).numpy()
        for cell in ("conv1", "conv2", "conv3"):
            for file in (f"{cell}_weights.syntxt", f"{cell}_quant_weights.syntxt"):
                values = _syntxt_values(weights / file)
                assert np.abs(values[:, None] - allowed[None, :]).min(axis=1).max() < 1e-6
            assert (weights / f"{cell}_SLB_logits.syntxt").is_file()
        # the float LeNet-BN loading the SLB folder is the same one-hot network
        same, _ = _run(tmp_path / name / "as_float", _float(text), "-w", str(weights))
        assert same == score
    print("gaps to float (points):", {k: round(v, 2) for k, v in gaps.items()})


# -- integer deployment ---------------------------------------------------------------------------
def _sat_activations(text: str) -> str:
    """The recipe with 4-bit SAT activation quantizers on the BatchNorms (linear activation:
    the quantizer's clamp to [0, alpha] is the non-linearity, as in seed 004's LeNet)."""
    bn = "[Bn_def]\nType=BatchNorm\nActivationFunction=Rectifier\n"
    assert bn in text
    return text.replace(bn, "[Bn_def]\nType=BatchNorm\nActivationFunction=Linear\nQAct=SAT\n"
                        "QAct.Alpha=6.0\nQAct.Range=15\n")


@pytest.mark.slow
def test_trained_slb_lenet_with_sat_activations_fuses_to_the_same_class(
        test_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SLB W2 weights are the integer grid 2k - 3 (scale 1/3): the protocol's fusion turns the
    trained network (BatchNorm + SAT activations) into an integer-only one that gives the
    same class as the fake-quant network on every test digit (or an exact tie of the integer
    logits at the top, which FusionCheck counts apart)."""
    fusion = pytest.importorskip("n2q.quant.fusion")  # the grid-driven fusion (protocol)
    if not (test_data / "mnist").is_dir():
        pytest.skip(f"no mnist/ in {test_data}")
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    text = _sat_activations((CONFIGS / "LeNet_BN_SLB_W2.ini").read_text())
    workdir = tmp_path / "w2a4"
    _run(workdir, text, "-learn-epoch", "2")
    cfg = load_config(workdir / "net.ini")
    sp = make_provider(cfg, seed=1)
    net = build_network(cfg, sp.size)
    load_weights(net, workdir / "weights_validation", ignore_missing=False)
    net.eval()
    fused, float_lines = fusion.fuse_network(net)
    check = fusion.FusionCheck()
    for x, _ in sp.loader("Test", shuffle=False):
        check.update(net, fused, x)
    print("\nSLB W2 + SAT A4 LeNet-BN:", check.line(), float_lines)
    for conv in ("conv1", "conv2", "conv3"):
        assert conv in fused.integer_nodes()
    assert check.total == sp.partition_sizes()["Test"] and not check.bad_nodes
    assert check.same_class + check.ties == check.total


# -- ResNet-18 CIFAR-10 --------------------------------------------------------------------------
def _tiny_cifar10(root: Path, per_batch: int = 4, n_test: int = 4) -> None:
    """CIFAR-10 binary files with random images: 1 label byte + R, G, B 32x32 planes."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def records(n: int, offset: int) -> bytes:
        images = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        return b"".join(bytes([(i + offset) % 10]) + images[i].tobytes() for i in range(n))
    for b in range(1, 6):
        (folder / f"data_batch_{b}.bin").write_bytes(records(per_batch, b))
    (folder / "test_batch.bin").write_bytes(records(n_test, 0))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["W1", "W2", "W4"])
def test_resnet18_cifar10_recipe_builds_and_learns(tmp_path: Path, name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe as written (224x224 inputs, poly warm-up, soft targets, SLB on every Conv)
    on a 20-image CIFAR folder: two optimizer steps on 2 stimuli move every SLB logit tensor
    and the loss is the soft-target cross-entropy."""
    _tiny_cifar10(tmp_path / "data")
    monkeypatch.setenv("N2Q_DATA", str(tmp_path / "data"))
    cfg = load_config(CONFIGS / f"ResNet18_CIFAR10_SLB_{name}.ini")
    sp = make_provider(cfg, seed=1)
    torch.manual_seed(0)
    net = build_network(cfg, input_shape=sp.size)
    slb = [(n, q) for n, q in quantizers(net) if getattr(q, "replaces_weight", False)]
    assert len(slb) == 20 and all(q.range == RANGES[name] for _, q in slb)
    assert net.cells["fc"].weight_quantizer is None
    for _, q in slb:
        q.plan(RunPlan(total_epochs=100))
        q.start_epoch(1)                               # before t_start: T = TStartVal = 1
    target = make_targets(net, sp, tmp_path)[0]
    assert target.soft_targets and target.target_value == 0.9
    opt = make_optimizer(net, sp.batch_size)
    first = opt.param_groups[0]
    assert first["lr"] == pytest.approx(0.01)          # warm-up starts at 0.1 x 0.1
    before = {n: q.logits.detach().clone() for n, q in slb}
    x, labels = next(iter(sp.loader("Learn", shuffle=True)))
    assert x.shape[1:] == (3, 224, 224)
    for _ in range(2):
        out = net(x[:2])["softmax"]
        loss = target.loss(out, labels[:2])
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    for n, q in slb:
        assert not torch.equal(q.logits.detach(), before[n]), n
