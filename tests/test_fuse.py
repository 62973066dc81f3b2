"""fuse_sat on a small residual network (fusion.md "What the tests must show").

The network is built from an INI by n2q.net, trained a few steps on random data with plain
PyTorch SGD (so BatchNorm statistics and SAT alphas move), then fused. The fake-quant network
is the reference: same class on every sample, every fused activation an integer level in
[0, R] equal to the fake-quant level except for rare rounding ties, logits to float tolerance.
"""

from __future__ import annotations

from pathlib import Path

import helpers
import pytest
import torch
from helpers import random_stimuli

from n2q.config import load_config
from n2q.errors import UserError
from n2q.net import build_network
from n2q.quant.fuse import FusionCheck, StepKind, fuse_sat, load_fused, save_fused

# The provider and the Conv template both networks below share.
HEADER_INI = """
[sp]
SizeX=8
SizeY=8
NbChannels=3
BatchSize=16

[Conv_def]
Type=Conv
ActivationFunction=Linear
QWeight=SAT
QWeight.Range=15
KernelDims=3 3
Padding=1
NoBias=1

"""

RESNET_INI = HEADER_INI + """[Bn_def]
Type=BatchNorm
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=4.0
QAct.Range=15

[conv1] Conv_def
Input=sp
NbOutputs=8
QWeight.Range=255
NoBias=0

[bn1] Bn_def
Input=conv1
NbOutputs=8

[conv2] Conv_def
Input=bn1
NbOutputs=8
QWeight.Range=7
QWeight.ApplyScaling=1
NoBias=0

[bn2] Bn_def
Input=conv2
NbOutputs=8
QAct.Range=7

[conv3] Conv_def
Input=bn2
NbOutputs=8
QWeight.QuantMode=Symmetric

[bn3] Bn_def
Input=conv3
NbOutputs=8
QAct.Alpha=3.0

[sum1]
Input=bn3,bn1
Type=ElemWise
NbOutputs=8
Operation=Sum
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=5.0
QAct.Range=15

[pool1]
Input=sum1
Type=Pool
PoolDims=2 2
Stride=2
Pooling=Max
NbOutputs=8
Mapping.Size=1

[pad1]
Input=pool1
Type=Padding
NbOutputs=8
TopPadding=1
BottomPadding=1
LeftPadding=1
RightPadding=1

[conv4] Conv_def
Input=pad1
NbOutputs=8
QWeight.Range=4
Padding=0

[bn4] Bn_def
Input=conv4
NbOutputs=8
QAct.Range=255
QAct.Alpha=6.0

[sum2]
Input=bn4,pool1
Type=ElemWise
NbOutputs=8
Operation=Sum
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=6.0
QAct.Range=15

[fc]
Input=sum2
Type=Fc
NbOutputs=5
ActivationFunction=Linear
QWeight=SAT
QWeight.Range=255
QWeight.ApplyScaling=1

[softmax]
Input=fc
Type=Softmax
NbOutputs=5
WithLoss=1

[softmax.Target]
"""

SHAPE = (3, 8, 8)


def build(tmp_path: Path, text: str = RESNET_INI, name: str = "res.ini"):
    ini = tmp_path / name
    ini.write_text(text)
    return build_network(load_config(ini), SHAPE)


def stimuli(n: int, seed: int) -> torch.Tensor:
    return random_stimuli(n, seed, SHAPE)


def train_briefly(net, steps: int = 25, seed: int = 0) -> None:
    helpers.train_briefly(
        net, SHAPE, "softmax", 5, steps=steps, batch=32, lr=0.05, first_seed=1000,
        seed=seed,
    )


@torch.no_grad()
def make_special_channels(net) -> None:
    """Negative gammas on some channels, and a dead channel (var 0, zero weights: f = 0)."""
    for bn in ("bn1", "bn2", "bn3", "bn4"):
        net.cells[bn].weight[1::3] *= -1
    net.cells["conv3"].weight[0] = 0.0  # Symmetric: 0 maps to the level 0
    net.cells["bn3"].running_mean[0] = 0.0
    net.cells["bn3"].running_var[0] = 0.0
    net.cells["bn3"].bias[0] = 1.1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    net = build(tmp_path_factory.mktemp("res"))
    train_briefly(net)
    make_special_channels(net)
    return net


def compare(net, fused, x: torch.Tensor) -> dict[str, float]:
    """Levels, tie share, logits and argmax of fused vs fake-quant on stimuli x."""
    with torch.no_grad():
        fake = net.forward_all(x)
        values = fused.forward_all(x)
        logits_fake = net(x)["softmax"].flatten(1)
        logits_fused = fused(x)["softmax"].flatten(1)
    assert fused.check_integer_outputs(values) == []
    differing = total = 0
    max_level_diff = 0
    for node in fused.integer_nodes():
        domain = fused.domains[node]
        reference = fake[fused.source_cell(node)].double() * domain.range / domain.alpha
        levels = torch.round(reference)
        assert (reference - levels).abs().max() < 1e-3  # the fake-quant output is on the grid
        diff = (values[node].double() - levels).abs()
        max_level_diff = max(max_level_diff, float(diff.max()))
        differing += int((diff != 0).sum())
        total += diff.numel()
    return {
        "share": differing / total,
        "max_level_diff": max_level_diff,
        "max_logit_diff": float((logits_fake - logits_fused).abs().max()),
        "same_class": float((logits_fake.argmax(1) == logits_fused.argmax(1)).float().mean()),
        "logit_scale": float(logits_fake.abs().max()),
    }


def test_residual_network_fuses_completely(trained) -> None:
    fused, float_lines = fuse_sat(trained)
    assert float_lines == []
    assert list(fused.cells) == [
        "conv1",
        "conv2",
        "conv3",
        "sum1",
        "pool1",
        "pad1",
        "conv4",
        "sum2",
        "fc",
        "softmax",
    ]
    assert all(not n.startswith("bn") for n in fused.cells)
    assert fused.alias["bn3"] == "conv3"
    weights = [fused.cells[n].weight for n in ("conv1", "conv2", "conv3", "conv4", "fc")]
    assert all(w.dtype in (torch.int8, torch.int16) for w in weights)
    assert int(fused.cells["conv2"].weight.abs().max()) <= 7  # R=7 Default: W' = 2k - 7
    assert int(fused.cells["conv4"].weight.abs().max()) <= 2  # R=4 Default: W' = k - 2


def test_residual_network_matches_fake_quant(trained) -> None:
    fused, _ = fuse_sat(trained)
    x = stimuli(600, 7)
    stats = compare(trained, fused, x)
    print(f"\nresidual net, 600 samples: {stats}")
    check = FusionCheck()  # the report's counts, in two batches, against compare()'s
    check.update(trained, fused, x[:250])
    check.update(trained, fused, x[250:])
    assert (check.total, check.same_class / 600, check.share) == (600, 1.0, stats["share"])
    assert check.max_logit_diff == pytest.approx(stats["max_logit_diff"])
    assert "same class on 600/600 stimuli" in check.line() and not check.bad_nodes
    assert stats["same_class"] == 1.0
    assert stats["share"] < 1e-4
    assert stats["max_level_diff"] <= 1
    assert stats["max_logit_diff"] <= 1e-4 * max(1.0, stats["logit_scale"])


def test_residual_network_equals_float64_fake_quant(trained) -> None:
    """The integer network is exact: against the fake-quant network computed in float64, no
    activation level differs (the rare flips against float32 are float32's own rounding)."""
    import copy

    fused, _ = fuse_sat(trained)
    net64 = copy.deepcopy(trained).double()
    x = stimuli(300, 8)
    with torch.no_grad():
        reference, values = net64.forward_all(x.double()), fused.forward_all(x)
    for node in fused.integer_nodes():
        domain = fused.domains[node]
        levels = torch.round(reference[fused.source_cell(node)] * domain.range / domain.alpha)
        assert torch.equal(values[node].double(), levels), node


def test_dead_channel_and_negative_gamma_are_exercised(trained) -> None:
    fused, _ = fuse_sat(trained)
    assert fused.cells["conv3"].scaling[0].item() == 1.0  # dead channel: constant q(beta)
    assert int(fused.cells["conv3"].weight[0].abs().sum()) == 0
    values = fused.forward_all(stimuli(4, 3))
    alpha = float(trained.cells["bn3"].act_quantizer.alpha.detach().abs())
    level = round(1.1 * 15 / alpha)
    assert torch.all(values["conv3"][:, 0] == min(level, 15))
    assert (trained.cells["bn2"].weight < 0).any()


def test_save_and_load_round_trip(trained, tmp_path: Path) -> None:
    fused, _ = fuse_sat(trained)
    folder = save_fused(fused, tmp_path / "weights_quantized")
    names = {p.name for p in folder.iterdir()}
    assert {
        "conv1_weights.syntxt",
        "conv1_biases.syntxt",
        "conv1_scaling.syntxt",
        "conv1_clip.syntxt",
        "sum1_scaling.syntxt",
        "sum1_clip.syntxt",
        "sum1_weights.syntxt",
        "fc_weights.syntxt",
        "fc_scaling.syntxt",
    } <= names
    assert not any(n.startswith("bn") for n in names)
    assert "fc_clip.syntxt" not in names  # float logits: no clip
    first = (folder / "conv2_weights.syntxt").read_text().split()
    assert all(v.lstrip("-").isdigit() for v in first)  # integers as written
    # A fresh network from the same INI (random weights, initial alphas): every value of the
    # fused network must come from the folder.
    fresh = build(tmp_path, name="fresh.ini")
    loaded = load_fused(fresh, folder)
    x = stimuli(64, 11)
    with torch.no_grad():
        a, b = fused.forward_all(x), loaded.forward_all(x)
    for node in fused.cells:
        assert torch.equal(a[node], b[node]), node


@pytest.mark.parametrize(
    "value,problem", [("2.5", "must be integers"), ("40000", "beyond the int16 range")]
)
def test_load_refuses_non_integer_weights(
    trained, tmp_path: Path, value: str, problem: str
) -> None:
    fused, _ = fuse_sat(trained)
    folder = save_fused(fused, tmp_path / "wq")
    path = folder / "conv2_weights.syntxt"
    lines = path.read_text().split("\n")
    first = lines[0].split()
    lines[0] = " ".join([value, *first[1:]])  # same count of values, one of them bad
    path.write_text("\n".join(lines))
    with pytest.raises(UserError, match=f"conv2_weights.syntxt: fused weights {problem}"):
        load_fused(build(tmp_path, name="again.ini"), folder)


def test_unfusable_cells_stay_float_and_are_listed(tmp_path: Path) -> None:
    text = RESNET_INI.replace(
        "[conv2] Conv_def\nInput=bn1\nNbOutputs=8\nQWeight.Range=7\nQWeight.ApplyScaling=1",
        "[conv2] Conv_def\nInput=bn1\nNbOutputs=8\nQWeight.Range=7\nQWeight.ApplyQuantization=0",
    )
    text = text.replace(
        "PoolDims=2 2\nStride=2\nPooling=Max", "PoolDims=2 2\nStride=2\nPooling=Average"
    )
    torch.manual_seed(1)
    net = build(tmp_path, text)
    train_briefly(net, steps=5)
    fused, lines = fuse_sat(net)
    listed = {line.split(":")[0] for line in lines}
    # an average pool makes the float reach pad1, conv4 + bn4 and sum2; bn4's and sum2's SAT outputs
    # are integer levels again, so fc is fused
    assert listed == {"conv2", "bn2", "pool1", "pad1", "conv4", "bn4", "sum2"}, lines
    assert any("ApplyQuantization=0" in line for line in lines)
    assert any("Average" in line for line in lines)
    assert "bn2" in fused.cells  # not folded: its conv stays float
    assert fused.steps[-2].name == "fc" and fused.steps[-2].kind is StepKind.LINEAR
    stats = compare(net, fused, stimuli(200, 5))
    assert stats["same_class"] == 1.0
    assert stats["share"] < 1e-3


def test_graph_without_batchnorm_and_quantizers(trained, tmp_path: Path) -> None:
    from n2q.io.graph import draw_graph

    fused, _ = fuse_sat(trained)
    written = draw_graph(fused, tmp_path / "res.ini")
    dot = (tmp_path / "res.ini.dot").read_text()
    assert "conv1" in dot and "sum2" in dot
    assert "BatchNorm" not in dot and "SAT" not in dot
    assert any(p.suffix == ".png" and p.exists() for p in written)


BRANCH_INI = HEADER_INI + """[conv1] Conv_def
Input=sp
NbOutputs=6
QWeight.Range=255

[bn1]
Type=BatchNorm
Input=conv1
NbOutputs=6
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=4.0
QAct.Range=15

[conv2] Conv_def
Input=bn1
NbOutputs=6
NoBias=0

[bn2]
Type=BatchNorm
Input=conv2
NbOutputs=6
ActivationFunction=Linear

[conv3] Conv_def
Input=bn1
NbOutputs=6
QWeight.ApplyQuantization={QUANTIZE_CONV3}

[bn3]
Type=BatchNorm
Input=conv3
NbOutputs=6
ActivationFunction=Linear

[sum1]
Input=bn3,bn2
Type=ElemWise
NbOutputs=6
Operation=Sum
ActivationFunction=Rectifier
QAct=SAT
QAct.Alpha=5.0
QAct.Range=15

[fc]
Input=sum1
Type=Fc
NbOutputs=5
ActivationFunction=Linear
QWeight=SAT
QWeight.Range=255

[softmax]
Input=fc
Type=Softmax
NbOutputs=5
WithLoss=1

[softmax.Target]
"""


@pytest.mark.parametrize("quantize_conv3", [1, 0])
def test_branches_without_qact_into_a_sat_sum(tmp_path: Path, quantize_conv3: int) -> None:
    """Conv + BatchNorm without QAct into a SAT Sum: a fused branch (partial sums in the Sum's
    units). When the other input stays float, the Sum stays float and reads the branch back in
    float units, still equal to the fake-quant network."""
    text = BRANCH_INI.replace("{QUANTIZE_CONV3}", str(quantize_conv3))
    torch.manual_seed(2)
    net = build(tmp_path, text, "branch.ini")
    with torch.no_grad():
        net.cells["bn2"].weight[::2] *= -1  # negative gammas in a branch
    train_briefly(net, steps=10)
    fused, lines = fuse_sat(net)
    assert fused.domains["conv2"].partial and fused.alias["bn2"] == "conv2"
    if quantize_conv3:
        assert lines == []
        assert fused.domains["conv3"].partial and fused.steps[3].kind is StepKind.SUM
    else:
        assert {line.split(":")[0] for line in lines} == {"conv3", "bn3", "sum1"}, lines
    assert (net.cells["bn2"].weight < 0).any()
    stats = compare(net, fused, stimuli(400, 9))
    assert stats["same_class"] == 1.0
    assert stats["share"] < 1e-4
    assert stats["max_logit_diff"] <= 1e-4 * max(1.0, stats["logit_scale"])


def run_against_float64(net, fused, x: torch.Tensor):
    """(every cell's output of the float64 fake-quant network, every fused node's output,
    both softmax logits [N, 5]) on stimuli x; the fused activations are checked in range."""
    import copy

    net64 = copy.deepcopy(net).double()
    with torch.no_grad():
        reference, values = net64.forward_all(x.double()), fused.forward_all(x)
        logits64 = net64(x.double())["softmax"].flatten(1)
        logits = fused(x)["softmax"].flatten(1)
    assert fused.check_integer_outputs(values) == []
    return reference, values, logits64, logits


MODES_INI = """
[sp]
SizeX=8
SizeY=8
NbChannels=3
BatchSize=16

[conv1]
Input=sp
Type=Conv
KernelDims=3 3
Padding=1
NbOutputs=6
ActivationFunction=Linear
QWeight=SAT
QWeight.Range={RANGE}
QWeight.QuantMode={MODE}
QWeight.ApplyScaling={SCALING}
QWeight.Mode={QMODE}
NoBias=0

[bn1]
Input=conv1
Type=BatchNorm
NbOutputs=6
ActivationFunction=Linear
QAct=SAT
QAct.Alpha=3.0
QAct.Range=15

[fc]
Input=bn1
Type=Fc
NbOutputs=5
ActivationFunction=Linear
QWeight=SAT
QWeight.Range={RANGE}
QWeight.QuantMode={MODE}
QWeight.ApplyScaling=1
QWeight.Mode={QMODE}

[softmax]
Input=fc
Type=Softmax
NbOutputs=5
WithLoss=1

[softmax.Target]
"""


@pytest.mark.parametrize(
    "mode, r_w, scaling, qmode, w_s",
    [
        ("Default", 1, 0, "Default", 1),  # binary: W' = 2k - 1 in {-1, 1}
        ("Default", 2, 0, "Default", 1),  # even R: W' = k - 1
        ("Default", 15, 0, "Default", 15),  # N2D2's 4-bit special case: W' = 2k - 15
        ("Default", 16, 1, "Integer", 8),
        ("Default", 255, 1, "Default", 255),
        ("Symmetric", 2, 0, "Default", 1),
        ("Symmetric", 15, 1, "Integer", 7),
        ("Symmetric", 255, 0, "Default", 127),
        ("FullRange", 15, 0, "Default", 15),
        ("Asymmetric", 7, 1, "Default", 3),
    ],
)
def test_weight_modes_and_ranges_fuse_exactly(
    tmp_path: Path, mode: str, r_w: int, scaling: int, qmode: str, w_s: int
) -> None:
    """Every SAT weight mode and range (QWeight.Mode=Integer cells too): W' are integers
    within [-W_s, W_s], and the fused levels equal those of the float64 fake-quant network
    exactly, with a negative gamma on every other channel."""

    text = (
        MODES_INI.replace("{RANGE}", str(r_w)).replace("{MODE}", mode)
        .replace("{SCALING}", str(scaling)).replace("{QMODE}", qmode)
    )
    torch.manual_seed(r_w)
    net = build(tmp_path, text, "modes.ini")
    with torch.no_grad():
        bn = net.cells["bn1"]
        bn.weight.copy_(torch.tensor([1.5, -0.8, 2.0, -1.2, 0.7, -2.5]))
        bn.bias.copy_(torch.tensor([0.5, 1.0, -0.2, 2.0, 1.2, 0.3]))
        bn.running_mean.copy_(torch.randn(6) * 0.3)
        bn.running_var.copy_(torch.rand(6) + 0.3)
    net.eval()
    fused, lines = fuse_sat(net)
    assert lines == []
    for node in ("conv1", "fc"):
        weight = fused.cells[node].weight
        assert weight.dtype in (torch.int8, torch.int16)
        # Asymmetric levels reach -r - 1 (W' = sg * W_s * w_q: +r + 1 on negative-gamma rows)
        assert int(weight.abs().max()) <= w_s + (mode == "Asymmetric"), node
        assert int(weight.abs().max()) >= w_s  # the extreme level is used
    reference, values, logits64, logits = run_against_float64(net, fused, stimuli(64, 3))
    levels = torch.round(reference["bn1"] * 15 / fused.domains["conv1"].alpha)
    assert torch.equal(values["conv1"].double(), levels)
    assert 0 < int(levels.count_nonzero()) < levels.numel() and int(levels.max()) == 15
    torch.testing.assert_close(logits.double(), logits64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change, key",
    [
        ("QWeight.QuantMode={MODE}", "QWeight.ApplyQuantization"),  # the clamp phase
        ("QWeight=SAT", "QWeight"),  # no weight quantizer at all
    ],
)
def test_nothing_to_fuse_is_one_user_error(tmp_path: Path, change: str, key: str) -> None:
    text = MODES_INI.replace("{RANGE}", "15").replace("{SCALING}", "0")
    text = text.replace("{QMODE}", "Default")
    if key == "QWeight":
        text = text.replace(change, "").replace("QWeight.", "; QWeight.").replace("{MODE}", "")
        text = text.replace("QAct=SAT", "").replace("QAct.", "; QAct.")
    else:
        text = text.replace(change, "QWeight.ApplyQuantization=0").replace("{MODE}", "Default")
    net = build(tmp_path, text, "nothing.ini").eval()
    with pytest.raises(UserError) as error:
        fuse_sat(net)
    message = str(error.value)
    assert "nothing.ini" in message and "[conv1]" in message and key in message
    assert "nothing to fuse" in message and "\n" not in message


def lsq_ini(variant: str, act: str) -> str:
    """MODES_INI with LSQ quantizers (4-bit weights, bn1 4-bit of ``variant`` after ``act``)
    and a padded 8-bit conv2 with its own 8-bit QAct between bn1 and fc."""
    text = MODES_INI.replace("{RANGE}", "15").replace("QWeight=SAT", "QWeight=LSQ")
    for line in ("QWeight.QuantMode={MODE}", "QWeight.ApplyScaling={SCALING}",
                 "QWeight.ApplyScaling=1", "QWeight.Mode={QMODE}"):
        text = text.replace(line + "\n", "")
    bn1 = "ActivationFunction=Linear\nQAct=SAT\nQAct.Alpha=3.0\nQAct.Range=15"
    assert bn1 in text
    text = text.replace(bn1, f"ActivationFunction={act}\nQAct=LSQ\nQAct.Range=15\n"
                        f"QAct.Variant={variant}")
    conv2 = ("[conv2]\nInput=bn1\nType=Conv\nKernelDims=3 3\nPadding=1\nNbOutputs=4\n"
             "ActivationFunction=Linear\nQWeight=LSQ\nQWeight.Range=255\nQAct=LSQ\n"
             "QAct.Range=255\n\n[fc]\nInput=conv2\n")
    return text.replace("[fc]\nInput=bn1\n", conv2)


@pytest.mark.parametrize("variant, act, low", [
    ("N2D2", "Linear", 0),          # unsigned levels [0, 15]: the clamp at 0 is the ReLU
    ("NNI", "Linear", -8),          # NNI: signed [-8, 7], the padded conv2 reads negatives
    ("NNI", "Rectifier", 0),        # a ReLU before a signed grid: levels from 0 up
])
def test_lsq_networks_fuse_exactly_through_their_grids(tmp_path: Path, variant: str, act: str,
                                                        low: int) -> None:
    """LSQ weights ([-8, 7] * s, 8-bit [-128, 127] * s) and activations fuse like SAT: the
    fused levels equal the float64 fake-quant network's, W' are the LSQ integers."""

    torch.manual_seed(3)
    net = build(tmp_path, lsq_ini(variant, act), "lsq.ini")
    train_briefly(net, steps=3)                 # sets the step sizes from the first batch
    with torch.no_grad():
        bn = net.cells["bn1"]
        bn.weight.copy_(torch.tensor([1.5, -0.8, 2.0, -1.2, 0.7, -2.5]))
        bn.bias.copy_(torch.tensor([0.5, 1.0, -0.2, -2.0, 1.2, 0.3]))
    fused, lines = fuse_sat(net)                # N2D2's name fuses any grid: LSQ here
    assert lines == []
    assert [s.kind for s in fused.steps] == [StepKind.LINEAR] * 3 + [StepKind.FLOAT]
    step = net.cells["conv1"].weight_quantizer.step_size
    assert torch.equal(fused.cells["conv1"].weight.abs().double(),
                       torch.round(net.cells["conv1"].weight_quantizer.fake_quantize(
                           net.cells["conv1"].weight).double() / step.double()).abs())
    domain = fused.domains["conv1"]
    assert (domain.qmin, domain.qmax, domain.zero_point) == (low, 15 if variant == "N2D2" else 7, 0)
    reference, values, logits64, logits = run_against_float64(net, fused, stimuli(64, 5))
    for node, cell in (("conv1", "bn1"), ("conv2", "conv2")):
        levels = torch.round(reference[cell] / fused.domains[node].scale)
        assert torch.equal(values[node].double(), levels), node
    # negative levels exactly where the grid has them and no ReLU cuts them
    assert (int(values["conv1"].min()) < 0) == (low < 0) and int(values["conv1"].max()) > 0
    torch.testing.assert_close(logits.double(), logits64, rtol=1e-5, atol=1e-5)


FOLD_INI = """
[sp]
SizeX=6
SizeY=6
NbChannels=2

[conv1]
Input=sp
Type=Conv
KernelDims=3 3
NbOutputs=3
NoBias=1
ActivationFunction=Linear
QWeight=SimQAT
QWeight.FoldBN={FOLD}

[bn1]
Input=conv1
Type=BatchNorm
ActivationFunction=Rectifier
QAct=SimQAT

[fc]
Input=bn1
Type=Fc
NbOutputs=4
ActivationFunction=Linear
QWeight=SimQAT

[softmax]
Input=fc
Type=Softmax
WithLoss=1

[softmax.Target]
"""


@pytest.mark.parametrize("fold", ["0", "OneConv", "TwoConv"])
def test_a_quantizer_that_folds_the_batchnorm_is_fused_once(tmp_path: Path, fold: str) -> None:
    """SimQAT's FoldBN runs the Conv through the BatchNorm inside the quantizer's run_op:
    folding the BatchNorm again into integers would be wrong (about half the levels were), so
    the fusion takes it as a shift only (folds_batchnorm); the network equals fake
    quantization."""
    ini = tmp_path / "fold.ini"
    ini.write_text(FOLD_INI.replace("{FOLD}", fold))
    torch.manual_seed(0)
    net = build_network(load_config(ini), (2, 6, 6))
    net.train()
    with torch.no_grad():
        for seed in range(3):                   # ranges and running statistics move
            net.forward_all(torch.rand(8, 2, 6, 6, generator=torch.Generator().manual_seed(seed)))
        net.cells["bn1"].weight.copy_(torch.tensor([1.5, -0.7, 0.4]))
    net.eval()
    fused, lines = fuse_sat(net)
    # FoldBN: the weight grid holds w*gamma/sigma (folds_batchnorm), the BatchNorm is fused as
    # its shift only, never folded twice
    assert lines == [] and fused.alias["bn1"] == "conv1"
    check = FusionCheck()
    check.update(net, fused, torch.rand(64, 2, 6, 6, generator=torch.Generator().manual_seed(9)))
    assert check.same_class == check.total == 64 and check.differing == 0 and not check.bad_nodes
