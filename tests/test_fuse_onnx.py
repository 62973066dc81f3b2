"""fuse_sat on the zoo-shaped ResNet-18 v1 imported from ONNX with the seed's SAT recipe.

The network is the ONNX model zoo's resnet18v1 structure (opset 7, MXNet names, narrow widths,
3x64x64 input) with seed 004's overrides (W4A4, 8-bit first and last layers, QAct=SAT on the 17
ReLUs): the second BatchNorm of each block and the downsample BatchNorm have no QAct and feed the
residual Add, whose SAT QAct is the block output. Trained a few steps on random data (BatchNorm
statistics and alphas move; some gammas negative), then fused. References:
- the fake-quant network (float32) layer by layer: every fused node fed the fake-quant
  network's own input levels must give its output levels (rounding ties aside);
- the same fake-quant network evaluated in float64, end to end: the fused network is exact, so
  it matches on every level (ties aside) and every class. End to end against float32, one
  float32 tie flips a level that then legitimately propagates through the 16 following layers,
  so those figures are printed, not bounded by the tie share.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import helpers  # noqa: E402
from helpers import random_stimuli, sat_ini  # noqa: E402

from n2q.config import load_config  # noqa: E402
from n2q.net import build_network  # noqa: E402
from n2q.quant.fuse import StepKind, fuse_sat, load_fused, save_fused  # noqa: E402

SHAPE = (3, 64, 64)
SAMPLES = 300
# The blocks' non-QAct BatchNorms: 8 second BNs + 3 downsample BNs, each a residual branch.
STAGES = range(1, 5)
BRANCH_BNS = [
    f"resnetv15_stage{s}_batchnorm{i}_fwd"
    for s in STAGES
    for i in ((1, 3) if s == 1 else (1, 2, 4))
]
SAT_BNS = ["resnetv15_batchnorm0_fwd"] + [
    f"resnetv15_stage{s}_batchnorm{i}_fwd"
    for s in STAGES
    for i in ((0, 2) if s == 1 else (0, 3))
]
SUMS = [f"resnetv15_stage{s}__plus{b}" for s in STAGES for b in (0, 1)]


def stimuli(n: int, seed: int) -> torch.Tensor:
    return random_stimuli(n, seed, SHAPE)


@torch.no_grad()
def negate_some_gammas(net) -> None:
    for bn in (*BRANCH_BNS, *SAT_BNS):
        net.cells[bn].weight[1::3] *= -1


def train_briefly(net, steps: int = 10, seed: int = 0) -> None:
    helpers.train_briefly(
        net, SHAPE, "soft1", 3, steps=steps, batch=16, lr=0.02, first_seed=100, seed=seed
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    net = build_network(load_config(sat_ini(folder, quantize=True)), SHAPE)
    initial = {n: net.cells[n].act_quantizer.alpha.item() for n in SUMS}
    negate_some_gammas(net)
    train_briefly(net)
    moved = [n for n in SUMS if net.cells[n].act_quantizer.alpha.item() != initial[n]]
    assert moved, "the SAT alphas did not move during training"
    return net, folder


def levels(value: torch.Tensor, domain) -> torch.Tensor:
    """A fake-quant activation k * alpha / R -> k (float64), checked to be on the grid."""
    scaled = value.double() * domain.range / domain.alpha
    rounded = torch.round(scaled)
    assert (scaled - rounded).abs().max() < 1e-3
    return rounded


def test_every_cell_is_fused(trained) -> None:
    net, _ = trained
    fused, float_lines = fuse_sat(net)
    assert float_lines == []
    kinds = {s.name: s.kind for s in fused.steps}
    # every BatchNorm is folded into its Conv: no BatchNorm and no quantizer left
    assert not any(c.type == "BatchNorm" for c in fused.cells.values())
    for bn in (*BRANCH_BNS, *SAT_BNS):
        conv = bn.replace("batchnorm", "conv")
        assert fused.alias[bn] == conv and kinds[conv] is StepKind.LINEAR
        # a branch outputs partial sums for its Sum, a SAT BN integer levels
        assert fused.domains[conv].partial == (bn in BRANCH_BNS)
    assert all(kinds[s] is StepKind.SUM for s in SUMS)
    assert kinds["resnetv15_pool0_fwd"] is StepKind.PASS  # max pool, padded: exact on integers
    assert kinds["resnetv15_pool1_fwd"] is StepKind.POOL_SUM
    last = fused.domains["resnetv15_stage4__plus1"]
    assert fused.domains["resnetv15_pool1_fwd"].range == last.range * 2 * 2  # 2x2 window sum
    assert kinds["resnetv15_dense0_fwd"] is StepKind.LINEAR
    assert not fused.domains["resnetv15_dense0_fwd"].integer  # float logits
    # conv0, pool0, the first conv of each of the 8 blocks, the 8 sums, pool1
    assert len(fused.integer_nodes()) == 1 + 1 + 8 + 8 + 1
    for name, module in fused.cells.items():
        weight = getattr(module, "weight", None)
        if weight is not None:
            assert not weight.is_floating_point(), name
            bound = 255 if name in ("resnetv15_conv0_fwd", "resnetv15_dense0_fwd") else 15
            assert int(weight.abs().max()) <= bound, name  # W' = 2k - R (Default mode)


def test_matches_fake_quant(trained) -> None:
    net, _ = trained
    fused, _ = fuse_sat(net)
    x = stimuli(SAMPLES, 7)
    net64 = copy.deepcopy(net).double()
    with torch.no_grad():
        fake32, values = net.forward_all(x), fused.forward_all(x)
        fake64 = net64.forward_all(x.double())
        logits32 = net(x)["soft1"].flatten(1).double()
        logits64 = net64(x.double())["soft1"].flatten(1)
        logits = fused(x)["soft1"].flatten(1).double()

    # every intermediate integer activation is an integer tensor in [0, R]
    assert fused.check_integer_outputs(values) == []
    for node in fused.integer_nodes():
        y, r = values[node], fused.domains[node].range
        assert not y.is_floating_point() and int(y.min()) >= 0 and int(y.max()) <= r, node

    # layer by layer against float32 fake-quant: each node on the fake-quant levels
    forced = {p: values[p] for p in fused.providers}
    differ = total = 0
    with torch.no_grad():
        for step in fused.steps[:-1]:  # the Softmax is the float target
            y = fused.run_node(step.name, [forced[i] for i in step.inputs])
            if not step.domain.integer:  # branch partial sums, logits
                reference = fake32[fused.source_cell(step.name)].double()
                scale = step.domain.alpha / step.domain.range if step.domain.partial else 1.0
                assert torch.allclose(y.double() * scale, reference, atol=1e-4), step.name
                forced[step.name] = y
                continue
            expected = levels(fake32[fused.source_cell(step.name)], step.domain)
            diff = (y.double() - expected).abs()
            assert float(diff.max()) <= 1, step.name
            differ += int((diff != 0).sum())
            total += diff.numel()
            forced[step.name] = expected.to(y.dtype)
    layer_share = differ / total

    # end to end against the float64 fake-quant network: exact up to ties
    differ64 = differ32 = total = 0
    for node in fused.integer_nodes():
        domain = fused.domains[node]
        got = values[node].double()
        differ64 += int((got != levels(fake64[fused.source_cell(node)], domain)).sum())
        differ32 += int((got != levels(fake32[fused.source_cell(node)], domain)).sum())
        total += got.numel()
    same64 = int((logits.argmax(1) == logits64.argmax(1)).sum())
    same32 = int((logits.argmax(1) == logits32.argmax(1)).sum())
    fake_same = int((logits32.argmax(1) == logits64.argmax(1)).sum())
    print(
        f"\nzoo ResNet-18 W4A4, {SAMPLES} samples, {total} integer activations: "
        f"layer-by-layer share vs float32 {layer_share:.2e}; end to end share vs float64 "
        f"{differ64 / total:.2e}, vs float32 {differ32 / total:.2e}; max |logit diff| vs "
        f"float64 {float((logits - logits64).abs().max()):.3g}, vs float32 "
        f"{float((logits - logits32).abs().max()):.3g} (logits up to "
        f"{float(logits64.abs().max()):.3g}); same class vs float64 {same64}/{SAMPLES}, vs "
        f"float32 {same32}/{SAMPLES} (float32 fake-quant vs float64: {fake_same}/{SAMPLES})"
    )
    assert layer_share < 1e-4
    assert differ64 / total < 1e-4
    assert same64 == SAMPLES  # hence vs float32 exactly as float32 vs float64 (printed)


def test_save_and_load_round_trip(trained, tmp_path: Path) -> None:
    net, folder = trained
    fused, _ = fuse_sat(net)
    written = save_fused(fused, tmp_path / "weights_quantized")
    names = {p.name for p in written.iterdir()}
    branch = "resnetv15_stage2_conv2_fwd"  # the 1x1 downsample
    expected = {f"{branch}_{kind}.syntxt" for kind in ("weights", "biases", "scaling")}
    assert expected <= names
    assert f"{branch}_clip.syntxt" not in names  # the Sum clamps
    assert not any("batchnorm" in n for n in names)
    fresh = build_network(load_config(folder / "resnet18-v1-q.ini"), SHAPE)
    loaded = load_fused(fresh, written)
    x = stimuli(32, 11)
    with torch.no_grad():
        a, b = fused.forward_all(x), loaded.forward_all(x)
    for node in fused.cells:
        assert torch.equal(a[node], b[node]), node
