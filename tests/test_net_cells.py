"""Cells, activations and fillers: shapes, forwards against plain PyTorch written here, keys."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from n2q.config import load_config
from n2q.errors import UserError
from n2q.net import ACTIVATIONS, CELL_TYPES, FILLERS, build_network
from n2q.net.activations import make_activation
from n2q.net.fillers import make_filler

HEAD = """
[sp]
SizeX=8
SizeY=8
"""


def net_from(tmp_path: Path, body: str, shape=(3, 8, 8), target: str = "out"):
    text = HEAD + textwrap.dedent(body) + f"\n[{target}.Target]\n"
    ini = tmp_path / "net.ini"
    ini.write_text(text)
    return build_network(load_config(ini), shape, quantize=False)


def run(net, x):
    return net.forward_all(x)


# -- one INI snippet per cell type, with its output shape and a reference forward -----------------
def _conv_ref(net, x):
    c = net.cells["out"]
    y = F.conv2d(x, c.weight, c.bias, stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    return torch.relu(y)


def _fc_ref(net, x):
    c = net.cells["out"]
    return torch.tanh(x.reshape(x.shape[0], -1) @ c.weight.t() + c.bias)[:, :, None, None]


def _pool_ref(net, x):  # N2D2 divides by the whole window, padding included
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)


def _bn_ref(net, x):  # training mode: batch statistics
    c = net.cells["out"]
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-3) * c.weight[None, :, None, None] \
        + c.bias[None, :, None, None]


def _softmax_ref(net, x):
    e = torch.exp(x - x.max(1, keepdim=True).values)
    return e / e.sum(1, keepdim=True)


def _padding_ref(net, x):
    return F.pad(x, (2, -1, 1, 0))


def _resize_ref(net, x):
    return F.interpolate(x, size=(4, 6), mode="bilinear", align_corners=True)


def _reshape_ref(net, x):
    return x.reshape(x.shape[0], 12, 4, 4)


def _transpose_ref(net, x):
    return x.transpose(2, 3)


def _scaling_ref(net, x):
    return x * torch.tensor([0.5, 2.0, -1.0])[None, :, None, None]


def _activation_ref(net, x):
    return torch.clamp(x, -0.5, 0.5)


def _dropout_ref(net, x):
    return x  # evaluated in eval mode below


def _elemwise_ref(net, x):
    a = torch.relu(x)
    return 2 * x + 0.5 + (-1) * a + 0.25


CASES = {
    "Conv": ("""
        [out]
        Input=sp
        Type=Conv
        KernelDims=3 2
        NbOutputs=4
        StrideDims=1 2
        PaddingX=2
        PaddingY=1
        DilationX=2
        ActivationFunction=Rectifier
        """, (4, 5, 8), _conv_ref),
    "Fc": ("""
        [out]
        Input=sp
        Type=Fc
        NbOutputs=5
        ActivationFunction=Tanh
        """, (5, 1, 1), _fc_ref),
    "Pool": ("""
        [out]
        Input=sp
        Type=Pool
        PoolSize=3
        Stride=2
        Padding=1
        Pooling=Average
        NbOutputs=3
        Mapping.ChannelsPerGroup=1
        """, (3, 4, 4), _pool_ref),
    "BatchNorm": ("""
        [out]
        Input=sp
        Type=BatchNorm
        NbOutputs=3
        Epsilon=1e-3
        """, (3, 8, 8), _bn_ref),
    "Softmax": ("""
        [out]
        Input=sp
        Type=Softmax
        NbOutputs=3
        """, (3, 8, 8), _softmax_ref),
    "Padding": ("""
        [out]
        Input=sp
        Type=Padding
        NbOutputs=3
        TopPadding=1
        BottomPadding=0
        LeftPadding=2
        RightPadding=-1
        """, (3, 9, 9), _padding_ref),
    "Resize": ("""
        [out]
        Input=sp
        Type=Resize
        NbOutputs=3
        OutputWidth=6
        OutputHeight=4
        Mode=Bilinear
        AlignCorners=1
        """, (3, 4, 6), _resize_ref),
    "Reshape": ("""
        [out]
        Input=sp
        Type=Reshape
        NbOutputs=12
        Dims=4 4 12
        """, (12, 4, 4), _reshape_ref),
    "Transpose": ("""
        [out]
        Input=sp
        Type=Transpose
        NbOutputs=3
        Perm=1 0 2
        """, (3, 8, 8), _transpose_ref),
    "Scaling": ("""
        [out]
        Input=sp
        Type=Scaling
        NbOutputs=3
        Factor=0.5 2 -1
        """, (3, 8, 8), _scaling_ref),
    "Activation": ("""
        [out]
        Input=sp
        Type=Activation
        NbOutputs=3
        ActivationFunction=Saturation
        ActivationFunction.Threshold=0.5
        """, (3, 8, 8), _activation_ref),
    "Dropout": ("""
        [out]
        Input=sp
        Type=Dropout
        NbOutputs=3
        Dropout=0.3
        """, (3, 8, 8), _dropout_ref),
    "ElemWise": ("""
        [relu]
        Input=sp
        Type=Activation
        ActivationFunction=Rectifier
        [out]
        Input=sp,relu
        Type=ElemWise
        NbOutputs=3
        Operation=Sum
        Weights=2 -1
        Shifts=0.5 0.25
        """, (3, 8, 8), _elemwise_ref),
}


def test_every_registered_cell_type_has_a_case():
    assert set(CASES) == set(CELL_TYPES)


@pytest.mark.parametrize("type_name", sorted(CELL_TYPES))
def test_cell_shape_and_forward(tmp_path, type_name):
    body, out_shape, reference = CASES[type_name]
    net = net_from(tmp_path, body)
    cell = net.cells["out"]
    assert cell.type == type_name
    assert cell.out_shape == out_shape
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8)
    if type_name == "Dropout":
        net.eval()
    y = run(net, x)["out"]
    assert y.shape == (4, *out_shape)
    torch.testing.assert_close(y, reference(net, x), rtol=1e-5, atol=1e-5)
    # the generated keys are published for the cells after it
    assert net.config.generated[("out", "_NbOutputs")] == out_shape[0]
    assert net.config.generated[("out", "_OutputsWidth")] == out_shape[2]


def test_dropout_drops_in_training(tmp_path):
    net = net_from(tmp_path, CASES["Dropout"][0])
    torch.manual_seed(0)
    y = net.forward_all(torch.ones(8, 3, 8, 8))["out"]
    zeros = (y == 0).float().mean().item()
    assert 0.25 < zeros < 0.35  # Dropout=0.3 is the dropping probability
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))


def test_batchnorm_running_stats_torch_convention(tmp_path):
    net = net_from(tmp_path, """
        [out]
        Input=sp
        Type=BatchNorm
        MovingAverageMomentum=0.25
        """)
    x = torch.randn(16, 3, 8, 8) * 3 + 1
    net.forward_all(x)
    bn = net.cells["out"]
    expected_mean = 0.25 * x.mean((0, 2, 3))
    expected_var = 0.75 + 0.25 * x.var((0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean, expected_mean)
    torch.testing.assert_close(bn.running_var, expected_var)
    net.eval()
    y = net.forward_all(x)["out"]
    ref = (x - expected_mean[None, :, None, None]) / torch.sqrt(
        expected_var[None, :, None, None] + 1e-5)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_conv_key_spellings_and_subsample(tmp_path):
    net = net_from(tmp_path, """
        [a]
        Input=sp
        Type=Conv
        KernelWidth=2
        KernelHeight=1
        NbOutputs=2
        SubSample=2
        [out]
        Input=a
        Type=Conv
        KernelSize=1
        NbOutputs=2
        Stride=1
        """)
    a = net.cells["a"]
    assert a.weight.shape == (2, 3, 1, 2)
    # N2D2: ceil(floor((8 - 2 + 1) / 1) / 2) = 4 wide, ceil(8 / 2) = 4 high
    assert a.out_shape == (2, 4, 4)
    x = torch.randn(2, 3, 8, 8)
    full = F.conv2d(x, a.weight)  # [2, 2, 8, 7]: N2D2 sums 2x2 blocks, the last column alone
    padded = F.pad(full, (0, 1))
    expected = padded.reshape(2, 2, 4, 2, 4, 2).sum((3, 5)) + a.bias[:, None, None]
    torch.testing.assert_close(net.forward_all(x)["a"], expected)
    net_nb = net_from(tmp_path, """
        [out]
        Input=sp
        Type=Conv
        KernelDims=3 3
        NbOutputs=2
        NoBias=1
        """)
    assert net_nb.cells["out"].bias is None


def test_elemwise_operations():
    from n2q.net import ElemWiseCell

    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    w = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    s = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 1.0]])

    def cell(op, **kw):
        return ElemWiseCell("e", ["a", "b"], (3, 4, 4), op, **kw)

    wa, wb = w[0][None, :, None, None], w[1][None, :, None, None]
    sa, sb = s[0][None, :, None, None], s[1][None, :, None, None]
    torch.testing.assert_close(cell("Sum", weights=w, shifts=s)([a, b]),
                               wa * a + sa + wb * b + sb)
    torch.testing.assert_close(cell("AbsSum", weights=w)([a, b]), wa * a.abs() + wb * b.abs())
    torch.testing.assert_close(cell("EuclideanSum", weights=w, shifts=s)([a, b]),
                               torch.sqrt(wa**2 * a**2 + sa**2 + wb**2 * b**2 + sb**2))
    torch.testing.assert_close(cell("Prod")([a, b]), a * b)
    torch.testing.assert_close(cell("Max")([a, b]), torch.maximum(a, b))


@pytest.mark.parametrize("mode,weights,expected", [
    ("PerLayer", "3", [[3, 3, 3], [3, 3, 3]]),
    ("PerInput", "1 2", [[1, 1, 1], [2, 2, 2]]),
    ("PerChannel", "1 2 3", [[1, 2, 3], [1, 2, 3]]),
    ("PerChannel", "1 2 3 4 5 6", [[1, 2, 3], [4, 5, 6]]),
])
def test_elemwise_coeff_modes(tmp_path, mode, weights, expected):
    net = net_from(tmp_path, f"""
        [b]
        Input=sp
        Type=Activation
        ActivationFunction=Linear
        [out]
        Input=sp,b
        Type=ElemWise
        Operation=Sum
        CoeffMode={mode}
        Weights={weights}
        """)
    got = net.cells["out"].weights.reshape(2, 3)
    assert got.tolist() == expected


def test_elemwise_refuses_wrong_coefficient_count(tmp_path):
    with pytest.raises(UserError, match=r"\[out\] Weights: CoeffMode=PerInput takes 1 value"):
        net_from(tmp_path, """
            [b]
            Input=sp
            Type=Activation
            [out]
            Input=sp,b
            Type=ElemWise
            Operation=Sum
            Weights=1 2 3
            """)


def test_resize_tf_and_nearest():
    from n2q.net import ResizeCell

    small = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]
    aligned = ResizeCell("r", ["sp"], (1, 2, 2), 3, 3, "Bilinear", align_corners=True)(small)
    torch.testing.assert_close(aligned[0, 0], torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.5, 2.0],
                                                            [2.0, 2.5, 3.0]]))
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    tf = ResizeCell("r", ["sp"], (1, 4, 4), 2, 3, "BilinearTF")(x)
    # TF legacy: source = dst * in/out -> rows 0, 2; columns 0, 4/3, 8/3
    cols = torch.tensor([0.0, 4 / 3, 8 / 3])
    expected = torch.stack([cols + 4 * r for r in (0.0, 2.0)])[None, None]
    torch.testing.assert_close(tf, expected)
    nn_ = ResizeCell("r", ["sp"], (1, 4, 4), 8, 8, "NearestNeighbor")(x)
    torch.testing.assert_close(nn_, x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    ac = ResizeCell("r", ["sp"], (1, 4, 4), 7, 7, "NearestNeighbor", align_corners=True)(x)
    idx = torch.tensor([0, 1, 1, 2, 2, 3, 3])  # i * 3 / 6 rounded half up
    torch.testing.assert_close(ac, x[:, :, idx][:, :, :, idx])


def test_transpose_channels_and_width():
    from n2q.net import TransposeCell

    x = torch.randn(2, 3, 4, 5)
    t = TransposeCell("t", ["sp"], (3, 4, 5), [2, 1, 0])  # swap width and channels
    assert t.out_shape == (5, 4, 3)
    torch.testing.assert_close(t(x), x.permute(0, 3, 2, 1))


# -- activations ----------------------------------------------------------------------------------
ACT_CASES = {
    "Linear": ({}, lambda x: x),
    "Rectifier": ({"LeakSlope": 0.1, "Clipping": 1.5},
                  lambda x: torch.where(x > 0, x, 0.1 * x).clamp(max=1.5)),
    "Logistic": ({}, lambda x: 1 / (1 + torch.exp(-x))),
    "LogisticWithLoss": ({}, lambda x: 1 / (1 + torch.exp(-x))),
    "Saturation": ({"Threshold": 0.7}, lambda x: x.clamp(-0.7, 0.7)),
    "Softplus": ({}, lambda x: torch.log1p(torch.exp(x))),
    "Swish": ({}, lambda x: x / (1 + torch.exp(-x))),
    "Tanh": ({"Alpha": 2.0}, lambda x: torch.tanh(2 * x)),
    "TanhLeCun": ({}, lambda x: 1.7159 * torch.tanh(2 * x / 3)),
}


def _section(tmp_path, lines: dict[str, object]):
    ini = tmp_path / "a.ini"
    ini.write_text("[s]\n" + "".join(f"{k}={v}\n" for k, v in lines.items()))
    return load_config(ini)["s"]


def test_every_activation_has_a_case():
    assert set(ACT_CASES) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_formulas(tmp_path, name):
    options, formula = ACT_CASES[name]
    keys = {"ActivationFunction": name}
    keys.update({f"ActivationFunction.{k}": v for k, v in options.items()})
    act = make_activation(_section(tmp_path, keys))
    x = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(act(x), formula(x), rtol=1e-5, atol=1e-6)


def test_activation_defaults_and_unknown_option(tmp_path):
    relu = make_activation(_section(tmp_path, {"ActivationFunction": "Rectifier"}))
    x = torch.linspace(-3, 30, 50)
    torch.testing.assert_close(relu(x), torch.relu(x))  # no leak, no clipping by default
    with pytest.raises(UserError, match=r"ActivationFunction.Alpa: unknown option for a Tanh "
                                        r"activation \(did you mean ActivationFunction.Alpha"):
        make_activation(_section(tmp_path, {"ActivationFunction": "Tanh",
                                            "ActivationFunction.Alpa": 2}))
    with pytest.raises(UserError, match="unknown value 'Relu'"):
        make_activation(_section(tmp_path, {"ActivationFunction": "Relu"}))


def test_options_of_another_choice_are_ignored_with_a_located_notice(tmp_path, capsys):
    """A base block's ``.Clipping`` under a cell that switches to Linear, or a base's
    ``WeightsFiller.Scaling`` under a NormalFiller: a notice at the line, not an error."""
    ini = tmp_path / "a.ini"
    ini.write_text("[base]\nActivationFunction=Rectifier\nActivationFunction.Clipping=6\n"
                   "WeightsFiller=HeFiller\nWeightsFiller.Scaling=2\n"
                   "[s] base\nActivationFunction=Linear\nWeightsFiller=NormalFiller\n"
                   "[t]\nActivationFunction.LeakSlope=0.1\n")
    cfg = load_config(ini)
    assert type(make_activation(cfg["s"])).__name__ == "Linear"
    filler = make_filler(cfg["s"], "WeightsFiller")
    assert (filler.mean, filler.std) == (0.0, 1.0)  # NormalFiller's own defaults
    assert isinstance(make_activation(cfg["t"]), torch.nn.Identity)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"Notice: {ini}:3: [s] ActivationFunction.Clipping: ignored, not an option of a "
        "Linear activation",
        f"Notice: {ini}:5: [s] WeightsFiller.Scaling: ignored, not an option of a NormalFiller",
        f"Notice: {ini}:10: [t] ActivationFunction.LeakSlope: ignored, not an option of no "
        "ActivationFunction (none is set)"]
    with pytest.raises(UserError, match=rf"^{ini}:3: \[s\] WeightsFiller.Sigma: unknown option "
                                        r"for the default filler \(NormalFiller 0, 0.05\)"):
        make_filler(_section(tmp_path, {"Other": 1, "WeightsFiller.Sigma": 2}), "WeightsFiller")


# -- fillers --------------------------------------------------------------------------------------
FAN_IN, FAN_OUT = 3 * 3 * 16, 3 * 3 * 32
# filler keys -> (mean, std, low, high) expected on a large tensor
FILL_CASES = {
    "NormalFiller": ({"Mean": 0.5, "StdDev": 2.0}, 0.5, 2.0, None, None),
    "UniformFiller": ({"Min": -1.0, "Max": 3.0}, 1.0, 4 / math.sqrt(12), -1.0, 3.0),
    "ConstantFiller": ({"Value": 0.25}, 0.25, 0.0, 0.25, 0.25),
    "XavierFiller": ({"VarianceNorm": "Average", "Scaling": 2.0}, 0.0,
                     2 * math.sqrt(1 / ((FAN_IN + FAN_OUT) / 2)),
                     -2 * math.sqrt(3 / ((FAN_IN + FAN_OUT) / 2)),
                     2 * math.sqrt(3 / ((FAN_IN + FAN_OUT) / 2))),
    "HeFiller": ({"VarianceNorm": "FanOut", "MeanNorm": 3.0, "Scaling": 0.5},
                 0.5 * 3.0 / FAN_OUT, 0.5 * math.sqrt(2 / FAN_OUT), None, None),
}


def test_every_filler_has_a_case():
    assert set(FILL_CASES) == set(FILLERS)


@pytest.mark.parametrize("name", sorted(FILLERS))
def test_filler_statistics(tmp_path, name):
    options, mean, std, low, high = FILL_CASES[name]
    keys = {"WeightsFiller": name}
    keys.update({f"WeightsFiller.{k}": v for k, v in options.items()})
    filler = make_filler(_section(tmp_path, keys), "WeightsFiller")
    torch.manual_seed(0)
    t = filler.fill(torch.empty(400_000), FAN_IN, FAN_OUT)
    assert abs(t.mean().item() - mean) <= 6 * std / math.sqrt(t.numel()) + 1e-7
    assert abs(t.std().item() - std) <= 0.01 * std + 1e-7
    if low is not None:
        assert t.min().item() >= low - 1e-6 and t.max().item() <= high + 1e-6
        if low != high:
            assert t.min().item() < low + 0.01 * (high - low)


def test_xavier_normal_and_default_filler(tmp_path):
    f = make_filler(_section(tmp_path, {"WeightsFiller": "XavierFiller",
                                        "WeightsFiller.Distribution": "Normal"}),
                    "WeightsFiller")
    torch.manual_seed(1)
    t = f.fill(torch.empty(400_000), 50, 200)
    assert abs(t.std().item() - math.sqrt(1 / 50)) < 0.01 * math.sqrt(1 / 50)
    d = make_filler(_section(tmp_path, {"Other": 1}), "WeightsFiller")
    t = d.fill(torch.empty(400_000), 50, 200)
    assert abs(t.mean().item()) < 1e-3 and abs(t.std().item() - 0.05) < 5e-4
    with pytest.raises(UserError, match="WeightsFiller.Scalling: unknown option for a "
                                        r"XavierFiller \(did you mean WeightsFiller.Scaling"):
        make_filler(_section(tmp_path, {"WeightsFiller": "XavierFiller",
                                        "WeightsFiller.Scalling": 1}), "WeightsFiller")


def test_conv_uses_spec_fans(tmp_path):
    """fan_in = kW*kH*C/groups: a depthwise 3x3 HeFiller has std sqrt(2/9)."""
    net = net_from(tmp_path, """
        [out]
        Input=sp
        Type=Conv
        KernelDims=3 3
        NbOutputs=3
        Mapping.ChannelsPerGroup=1
        WeightsFiller=HeFiller
        """)
    conv = net.cells["out"]
    assert conv.groups == 3 and conv.weight.shape == (3, 1, 3, 3)
    assert (conv.fan_in, conv.fan_out) == (9, 27)


def test_conv_dense_forward_costs_a_conv2d(tmp_path):
    """Without mask or quantizer, the weight passed to conv2d is the parameter itself."""
    net = net_from(tmp_path, CASES["Conv"][0])
    conv = net.cells["out"]
    assert conv.quantized_weight() is conv.weight


def test_back_propagate_0_stops_the_gradient_at_the_input(tmp_path):
    net = net_from(tmp_path, """
        [first]
        Input=sp
        Type=Conv
        KernelSize=1
        NbOutputs=2
        [out]
        Input=first
        Type=Fc
        NbOutputs=2
        BackPropagate=0
        WeightsExportFormat=CO
        """)
    net(torch.randn(2, 3, 8, 8))["out"].sum().backward()
    assert net.cells["first"].weight.grad is None  # nothing flows back through [out]
    assert net.cells["out"].weight.grad is not None  # its own weights still learn
    assert net.cells["out"].weights_export_format == "CO"


@pytest.mark.parametrize("dims,shape", [("4 4 12", (12, 4, 4)), ("0 -1 3", (3, 8, 8)),
                                        ("192", (1, 1, 192)), ("-1 1 1 0", (1, 1, 192))])
def test_reshape_dims_n2d2_order(tmp_path, dims, shape):
    net = net_from(tmp_path, f"""
        [out]
        Input=sp
        Type=Reshape
        Dims={dims}
        """)
    assert net.cells["out"].out_shape == shape
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(net(x)["out"], x.reshape(2, *shape))


@pytest.mark.parametrize("padding", [1, 2])
@pytest.mark.parametrize("pooling", ["Max", "Average"])
@pytest.mark.parametrize("include", [True, False])
def test_pool_padding(pooling, include, padding):
    """Padding above kernel/2 (torch refuses it) pads explicitly; same results."""
    from n2q.net import PoolCell

    x = torch.randn(2, 3, 7, 7)
    cell = PoolCell("p", ["sp"], (3, 7, 7), (3, 3), pooling, stride=(2, 2),
                    padding=(padding, padding), count_include_pad=include)
    y = cell(x)
    assert y.shape[1:] == cell.out_shape == (3, (7 + 2 * padding - 3 + 2) // 2,
                                            (7 + 2 * padding - 3 + 2) // 2)
    fill = float("-inf") if pooling == "Max" else 0.0
    xp = F.pad(x, (padding,) * 4, value=fill)
    windows = xp.unfold(2, 3, 2).unfold(3, 3, 2)  # [B, C, oh, ow, 3, 3]
    if pooling == "Max":
        expected = windows.amax((-1, -2))
    elif include:
        expected = windows.mean((-1, -2))
    else:
        valid = F.pad(torch.ones(1, 1, 7, 7), (padding,) * 4).unfold(2, 3, 2).unfold(3, 3, 2)
        expected = windows.sum((-1, -2)) / valid.sum((-1, -2))
    torch.testing.assert_close(y, expected)


def test_pool_count_include_padding_key(tmp_path):
    net = net_from(tmp_path, CASES["Pool"][0] + "CountIncludePadding=0\n")
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(net(x)["out"],
                               F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
