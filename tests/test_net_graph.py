"""The network builder: graph, mappings, targets, errors, summary, quantizer hooks."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from n2q.config import load_config
from n2q.errors import UserError
from n2q.net import build_network
from n2q.net.mapping import Pattern, group_map, pattern_map, realise

HEAD = """
[sp]
SizeX=8
SizeY=8
"""


def config(tmp_path: Path, body: str, head: str = HEAD):
    ini = tmp_path / "net.ini"
    ini.write_text(head + textwrap.dedent(body))
    return load_config(ini)


def build(tmp_path: Path, body: str, shape=(3, 8, 8), **kw):
    return build_network(config(tmp_path, body), shape, quantize=False, **kw)


TWO_BRANCHES = """
[out.Target]
TopN=2
[out]
Input=a,b
Type=Fc
NbOutputs=4
[b]
Input=sp
Type=Conv
KernelSize=3
Padding=1
NbOutputs=2
[a]
Input=env
Type=Conv
KernelSize=1
NbOutputs=[b]_NbOutputs
"""


def test_any_order_concat_and_generated_keys(tmp_path):
    net = build(tmp_path, TWO_BRANCHES)
    assert list(net.cells) == ["b", "a", "out"]  # dependency order, file order among ready
    assert net.inputs == {"b": ["sp"], "a": ["sp"], "out": ["a", "b"]}
    assert net.consumers("a") == ["out"]
    assert net.cells["a"].out_shape == (2, 8, 8)  # NbOutputs=[b]_NbOutputs
    fc = net.cells["out"]
    assert fc.weight.shape == (4, 4 * 8 * 8)
    x = torch.randn(2, 3, 8, 8)
    a, b = net.cells["a"], net.cells["b"]
    cat = torch.cat([F.conv2d(x, a.weight, a.bias), F.conv2d(x, b.weight, b.bias, padding=1)], 1)
    expected = (cat.flatten(1) @ fc.weight.t() + fc.bias)[:, :, None, None]
    torch.testing.assert_close(net(x)["out"], expected)
    assert [t.top_n for t in net.targets] == [2]


def test_softmax_with_loss_gives_logits(tmp_path):
    net = build(tmp_path, """
        [fc]
        Input=sp
        Type=Fc
        NbOutputs=5
        [soft]
        Input=fc
        Type=Softmax
        WithLoss=1
        [soft.Target]
        """)
    x = torch.randn(3, 3, 8, 8)
    out = net(x)["soft"]
    every = net.forward_all(x)
    torch.testing.assert_close(out, every["fc"])
    torch.testing.assert_close(every["soft"], torch.softmax(every["fc"], 1))
    assert net.loss_kind("soft") == "softmax_ce"


def test_targets_keys_and_suffixes(tmp_path):
    (tmp_path / "labels.dat").write_text("0 1\n")
    net = build(tmp_path, """
        [fc]
        Input=sp
        Type=Fc
        NbOutputs=5
        ActivationFunction=LogisticWithLoss
        [fc.Target-main]
        TargetValue=0.9
        DefaultValue=-0.1
        TopN=3
        LabelsMapping=labels.dat
        CreateMissingLabels=1
        """)
    (t,) = net.targets
    assert (t.section, t.cell, t.type, t.target_value, t.default_value, t.top_n) == \
        ("fc.Target-main", "fc", "TargetScore", 0.9, -0.1, 3)
    assert t.labels_mapping == tmp_path / "labels.dat" and t.create_missing_labels
    assert net.loss_kind("fc") == "logistic_bce"
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(torch.sigmoid(net(x)["fc"]), net.forward_all(x)["fc"])


# -- mappings -------------------------------------------------------------------------------------
LENET_CONV2 = """
[conv2]
Input=sp
Type=Conv
KernelDims=5 5
NbOutputs=16
NoBias=1
Mapping(sp)=\\
1 0 0 0 1 1 1 0 0 1 1 1 1 0 1 1 \\
1 1 0 0 0 1 1 1 0 0 1 1 1 1 0 1 \\
1 1 1 0 0 0 1 1 1 0 0 1 0 1 1 1 \\
0 1 1 1 0 0 1 1 1 1 0 0 1 0 1 1 \\
0 0 1 1 1 0 0 1 1 1 1 0 1 1 0 1 \\
0 0 0 1 1 1 0 0 1 1 1 1 0 1 1 1
[conv2.Target]
"""


def test_lenet_sparse_mapping_is_a_fixed_mask(tmp_path):
    net = build(tmp_path, LENET_CONV2, shape=(6, 14, 14))
    conv = net.cells["conv2"]
    assert conv.mask is not None and conv.groups == 1
    assert conv.nb_params() == 1500  # 60 connections x 25
    # rows of the text are input channels: channel 0 feeds outputs 0, 4, 5, 6, 9...
    assert conv.mask[:, 0, 0, 0].nonzero().flatten().tolist() == [0, 4, 5, 6, 9, 10, 11, 12,
                                                                    14, 15]
    assert conv.mask[0, :, 0, 0].tolist() == [True, True, True, False, False, False]
    assert (conv.weight[~conv.mask] == 0).all()  # zero from the start
    # masked weights stay exactly zero through SGD with weight decay and momentum
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 6, 14, 14))["conv2"].square().sum().backward()
        opt.step()
    assert (conv.weight[~conv.mask] == 0).all()
    # and through a quantizer that maps 0 to a non-zero level
    conv.weight_quantizer = _AddHalf()
    w = conv.quantized_weight()
    assert (w[~conv.mask] == 0).all() and (w[conv.mask] != 0).any()
    x = torch.randn(2, 6, 14, 14)
    torch.testing.assert_close(net(x)["conv2"], F.conv2d(x, (conv.weight + 0.5) * conv.mask))


class _AddHalf(nn.Module):
    def forward(self, w):
        return w + 0.5


def test_pattern_and_group_maps():
    # Size=1: identity; NbIterations limits; Offset shifts outputs (wrapping modulo O)
    assert torch.equal(pattern_map(Pattern(), 4, 4), torch.eye(4, dtype=torch.bool))
    m = pattern_map(Pattern(nb_iterations=2, offset_x=3), 4, 4)
    assert m.nonzero().tolist() == [[0, 1], [3, 0]]
    m = pattern_map(Pattern(size_x=2, size_y=2, stride_x=2, stride_y=2), 4, 4)
    assert torch.equal(m, torch.block_diag(torch.ones(2, 2), torch.ones(2, 2)).bool())
    # N2D2's uneven groups: 5 outputs over 2 groups -> 2 then 3
    g = group_map(5, 4, 2)
    assert g.int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1],
                                [0, 0, 1, 1]]
    assert realise(g).groups == 1 and realise(g).mask is not None
    assert realise(group_map(6, 4, 2)).groups == 2 and realise(group_map(6, 4, 2)).mask is None
    assert realise(None).groups == 1 and realise(None).mask is None


@pytest.mark.parametrize("keys,groups", [
    ("Mapping.NbGroups=3", 3),
    ("Mapping.ChannelsPerGroup=1", 3),
    ("Mapping.Size=1", 3),
    ("Mapping.SizeY=3\nMapping.SizeX=6", 1),
])
def test_mapping_keys_to_groups(tmp_path, keys, groups):
    net = build(tmp_path, f"""
        [c]
        Input=sp
        Type=Conv
        KernelSize=3
        NbOutputs={6 if groups != 3 or "Size" not in keys else 3}
        {keys}
        [c.Target]
        """)
    conv = net.cells["c"]
    assert conv.groups == groups and conv.mask is None
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(net(x)["c"], F.conv2d(x, conv.weight, conv.bias, groups=groups))


def test_per_input_mapping_pattern_for_a_pool(tmp_path):
    """SqueezeNet's pool: two 2-channel inputs into 4 outputs, second shifted by OffsetX."""
    net = build(tmp_path, """
        [a]
        Input=sp
        Type=Conv
        KernelSize=1
        NbOutputs=2
        [b]
        Input=sp
        Type=Conv
        KernelSize=1
        NbOutputs=2
        [p]
        Input=a,b
        Type=Pool
        PoolSize=2
        Stride=2
        Pooling=Max
        NbOutputs=4
        Mapping.Size=1
        Mapping.NbIterations=2
        Mapping(b).OffsetX=2
        [p.Target]
        """)
    x = torch.randn(2, 3, 8, 8)
    every = net.forward_all(x)
    expected = F.max_pool2d(torch.cat([every["a"], every["b"]], 1), 2)
    torch.testing.assert_close(every["p"], expected)


# -- errors ---------------------------------------------------------------------------------------
def test_unknown_input_names_section_and_line(tmp_path):
    with pytest.raises(UserError, match=r"net.ini:\d+: \[b\] Input: unknown input 'conv_a' "
                                        r"\(did you mean conv-a\?\)"):
        build(tmp_path, """
            [conv-a]
            Input=sp
            Type=Conv
            KernelSize=1
            NbOutputs=2
            [b]
            Input=conv_a
            Type=Conv
            KernelSize=1
            NbOutputs=2
            [b.Target]
            """)


def test_unknown_input_next_to_a_known_one(tmp_path):
    with pytest.raises(UserError, match=r"\[b\] Input: unknown input 'nope'"):
        build(tmp_path, """
            [a]
            Input=sp
            Type=Fc
            NbOutputs=2
            [b]
            Input=a,nope
            Type=Fc
            NbOutputs=2
            [b.Target]
            """)


@pytest.mark.parametrize("inputs,message", [
    ("Sp", r"net.ini:13: \[b\] Input: unknown input 'Sp' \(did you mean sp\?\)"),
    ("A", r"unknown input 'A' \(did you mean a\?\)"),
    ("a,common.config", r"net.ini:13: \[b\] Input: \[common.config\] is not a layer \(it "
                        r"has no Input=\): name the provider \(sp\) or a layer of this file"),
])
def test_input_that_is_not_a_layer_or_differs_in_case(tmp_path, inputs, message):
    with pytest.raises(UserError, match=message):
        build(tmp_path, f"""
            [common.config]
            NoBias=1
            [a]
            Input=sp
            Type=Fc
            NbOutputs=2
            [b]
            Input={inputs}
            Type=Fc
            NbOutputs=2
            [b.Target]
            """)


def test_cycle_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"Input: the inputs form a cycle: (a -> b -> a|b -> a -> "
                                        r"b)"):
        build(tmp_path, """
            [a]
            Input=b
            Type=Fc
            NbOutputs=2
            [b]
            Input=a
            Type=Fc
            NbOutputs=2
            [b.Target]
            """)


def test_unknown_key_did_you_mean(tmp_path):
    with pytest.raises(UserError, match=r"net.ini:9: \[conv2\] KernelDim: unknown key for a "
                                        r"Conv cell \(did you mean KernelDims\?\)"):
        build(tmp_path, """
            [conv2]
            Input=sp
            Type=Conv
            KernelDim=5 5
            NbOutputs=2
            [conv2.Target]
            """)


def test_foreign_key_families_are_accepted(tmp_path):
    net = build(tmp_path, """
        [c]
        Input=sp
        Type=Conv
        KernelSize=1
        NbOutputs=2
        Solvers=SGD
        Solvers.LearningRate=0.1
        WeightsSolver.Momentum=0.9
        BiasSolver=Adam
        QWeight=SAT
        QWeight.Range=15
        QAct=SAT
        QActSolver=SGD
        QWeightSolver.LearningRate=0.01
        Model=Frame_CUDA
        DataType=Float32
        [bn]
        Input=c
        Type=BatchNorm
        ScaleSolver.LearningRate=0.1
        [bn.Target]
        """)
    assert list(net.cells) == ["c", "bn"]


def test_pool_mixing_channels_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"\[p\] .*only per-channel pooling is supported.*"
                                        r"Mapping.Size=1"):
        build(tmp_path, """
            [p]
            Input=sp
            Type=Pool
            PoolSize=2
            Pooling=Max
            NbOutputs=3
            [p.Target]
            """)


def test_no_target_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"no target: add a \[<cell>.Target\] section"):
        build(tmp_path, """
            [fc]
            Input=sp
            Type=Fc
            NbOutputs=2
            """)


def test_target_of_unknown_cell(tmp_path):
    with pytest.raises(UserError, match=r"\[fc2.Target\] target of an unknown cell 'fc2'"):
        build(tmp_path, """
            [fc]
            Input=sp
            Type=Fc
            NbOutputs=2
            [fc2.Target]
            """)


def test_unknown_type_lists_the_valid_ones(tmp_path):
    with pytest.raises(UserError, match=r"\[c\] Type: unknown value 'Deconv'.*valid: "
                                        r"Activation, BatchNorm, Conv"):
        build(tmp_path, """
            [c]
            Input=sp
            Type=Deconv
            [c.Target]
            """)


def test_empty_output_and_channel_mismatch(tmp_path):
    with pytest.raises(UserError, match=r"\[c\] the output of c would be empty \(width x "
                                        r"height: input 8x8, output 1x-1\)"):
        build(tmp_path, """
            [c]
            Input=sp
            Type=Conv
            KernelWidth=8
            KernelHeight=10
            NbOutputs=2
            [c.Target]
            """)
    with pytest.raises(UserError, match=r"\[bn\] NbOutputs: is 4 but the input has 3 channels"):
        build(tmp_path, """
            [bn]
            Input=sp
            Type=BatchNorm
            NbOutputs=4
            [bn.Target]
            """)


def test_spiking_models_are_refused(tmp_path):
    body = """
        [env]
        SizeX=8
        SizeY=8
        ConfigSection=env.config
        [env.config]
        StimulusType=JitteredPeriodic
        [fc]
        Input=env
        Type=Fc
        NbOutputs=2
        [fc.Target]
        """
    with pytest.raises(UserError, match=r"StimulusType: spiking models are not supported"):
        build_network(config(tmp_path, body, head=""), (1, 8, 8))
    with pytest.raises(UserError, match=r"DefaultModel: spiking models are not supported"):
        build_network(config(tmp_path, TWO_BRANCHES, head="DefaultModel=Spike\n" + HEAD),
                      (3, 8, 8))
    spiking_base = """
        [Fc_def]
        Type=Fc
        Model=Spike_RRAM
        [fc] Fc_def
        Input=sp
        NbOutputs=2
        [fc.Target]
        """
    with pytest.raises(UserError, match=r"net.ini:8: \[fc\] Model: spiking models are not "
                                        r"supported"):
        build(tmp_path, spiking_base)


# -- builder extras -------------------------------------------------------------------------------
def test_insert_batchnorm_after_conv(tmp_path):
    net = build_network(config(tmp_path, """
        [c]
        Input=sp
        Type=Conv
        KernelSize=3
        NbOutputs=2
        ActivationFunction=Rectifier
        [fc]
        Input=c
        Type=Fc
        NbOutputs=2
        [fc.Target]
        """, head="InsertBatchNormAfterConv=1\n"), (3, 8, 8), quantize=False)
    assert list(net.cells) == ["c", "c_batchnorm", "fc"]
    assert net.inputs["fc"] == ["c_batchnorm"]
    assert isinstance(net.cells["c"].activation, nn.Identity)
    assert type(net.cells["c_batchnorm"].activation).__name__ == "Rectifier"


def test_onnx_section_is_delegated(tmp_path, monkeypatch):
    """Type=ONNX: the importer's cells join the net; later Input= may name them, the
    section itself (its first output) or one of its aliases."""
    from n2q.net import FcCell

    seen = {}

    def import_onnx(cfg, section, input_shapes):
        seen["args"] = (section.name, input_shapes)
        fc = FcCell("dense0", ["sp"], input_shapes[0], 4)
        return types.SimpleNamespace(cells=[fc], outputs=["dense0"],
                                     aliases={"flatten0": "dense0"})

    monkeypatch.setitem(sys.modules, "n2q.net.onnx",
                        types.SimpleNamespace(import_onnx=import_onnx))
    net = build(tmp_path, """
        [soft]
        Input=onnx
        Type=Softmax
        [soft2]
        Input=flatten0
        Type=Softmax
        [onnx]
        Input=sp
        Type=ONNX
        File=whatever.onnx
        [dense0.Target]
        """)
    assert seen["args"] == ("onnx", [(3, 8, 8)])
    assert list(net.cells) == ["dense0", "soft", "soft2"]
    assert net.inputs["soft"] == ["dense0"] and net.inputs["soft2"] == ["dense0"]
    assert net.config.generated[("dense0", "_NbOutputs")] == 4


def test_onnx_section_next_to_other_inputs_only_orders(tmp_path, monkeypatch):
    """N2D2 (DeepNetGenerator): in ``Input=onnx,X`` the ONNX section is dropped from the
    parents once imported, so the layer reads X alone (MobileNet_v1_ONNX_transfer.ini's fc);
    the layer still waits for the import even when written before it."""
    from n2q.net import ConvCell

    def import_onnx(cfg, section, input_shapes):
        conv = ConvCell("conv:0", ["sp"], input_shapes[0], 5, (3, 3))  # 5x6x6
        pool = ConvCell("pool:0", ["conv:0"], conv.out_shape, 7, (6, 6))  # 7x1x1
        return types.SimpleNamespace(cells=[conv, pool], outputs=["pool:0"], aliases={})

    monkeypatch.setitem(sys.modules, "n2q.net.onnx",
                        types.SimpleNamespace(import_onnx=import_onnx))
    net = build(tmp_path, """
        [fc]
        Input=onnx,conv:0
        Type=Fc
        NbOutputs=2
        [onnx]
        Input=sp
        Type=ONNX
        File=whatever.onnx
        [fc.Target]
        """)
    assert list(net.cells) == ["conv:0", "pool:0", "fc"]
    assert net.inputs["fc"] == ["conv:0"]
    assert net.cells["fc"].in_shape == (5, 6, 6)  # not 5 + 7 channels concatenated
    assert net.cells["fc"].weight.shape == (2, 5 * 6 * 6)
    x = torch.rand(2, 3, 8, 8)
    outs = net.forward_all(x)
    ref = F.linear(outs["conv:0"].flatten(1), net.cells["fc"].weight, net.cells["fc"].bias)
    torch.testing.assert_close(outs["fc"].flatten(1), ref)


def test_onnx_input_order_with_a_real_graph(tmp_path):
    """The same with the real importer: a Conv -> GlobalAveragePool -> Flatten -> Gemm graph
    whose Gemm is ignored; the new fc reads the pool output only (8 channels)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = torch.Generator().manual_seed(0)
    w = numpy_helper.from_array(torch.randn(8, 3, 3, 3, generator=rng).numpy(), "w")
    g = numpy_helper.from_array(torch.randn(10, 8, generator=rng).numpy(), "g")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "g"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w, g])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              str(tmp_path / "m.onnx"))
    net = build(tmp_path, """
        [onnx]
        Input=sp
        Type=ONNX
        File=m.onnx
        Ignore=y
        [fc]
        Input=onnx,p
        Type=Fc
        NbOutputs=4
        [fc.Target]
        """)
    assert net.inputs["fc"] == ["p"]
    assert net.cells["fc"].in_shape == (8, 1, 1)
    x = torch.rand(2, 3, 8, 8)
    pooled = F.conv2d(x, net.cells["c"].weight, net.cells["c"].bias, padding=1).mean((2, 3))
    torch.testing.assert_close(net.forward_all(x)["p"].flatten(1), pooled)


def test_summary_table(tmp_path):
    net = build(tmp_path, TWO_BRANCHES)
    text = net.summary()
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "type", "input(s)", "output", "params", "quantizers"]
    row = next(line for line in lines if line.startswith("out "))
    assert row.split()[:5] == ["out", "Fc", "a,b", "4x1x1", f"{4 * 256 + 4:,}"]
    assert f"{net.nb_params():,} parameters" in lines[-1]
    assert net.nb_params() == (2 * 3 + 2) + (2 * 3 * 9 + 2) + (4 * 256 + 4)


def test_quantizers_are_attached_when_asked(tmp_path, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(attach_quantizers=lambda net: calls.append(net))
    monkeypatch.setitem(sys.modules, "n2q.quant", fake)
    cfg = config(tmp_path, TWO_BRANCHES)
    net = build_network(cfg, (3, 8, 8))
    assert calls == [net]
    build_network(config(tmp_path, TWO_BRANCHES), (3, 8, 8), quantize=False)
    assert len(calls) == 1


def test_cell_forward_order_op_activation_act_quantizer(tmp_path):
    net = build(tmp_path, """
        [fc]
        Input=sp
        Type=Fc
        NbOutputs=3
        ActivationFunction=Rectifier
        [fc.Target]
        """)
    fc = net.cells["fc"]
    fc.weight_quantizer = _AddHalf()
    fc.act_quantizer = _AddHalf()
    x = torch.randn(2, 3, 8, 8)
    expected = torch.relu(x.flatten(1) @ (fc.weight + 0.5).t() + fc.bias) + 0.5
    torch.testing.assert_close(net(x)["fc"][:, :, 0, 0], expected)
    assert net.summary().splitlines()[2].endswith("W:_AddHalf, A:_AddHalf")
    fc.act_quantizer.describe = lambda: "SAT R=15"  # a quantizer's own label when it has one
    assert net.summary().splitlines()[2].endswith("W:_AddHalf, A:SAT R=15")


def test_deepcopy_shares_the_config(tmp_path):
    import copy

    net = build(tmp_path, TWO_BRANCHES)
    twin = copy.deepcopy(net)
    assert twin.cells["out"].section is net.cells["out"].section is not None
    assert twin.config is net.config
    assert twin.cells["out"].weight is not net.cells["out"].weight
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(twin(x)["out"], net(x)["out"])


TWO_SIZES = """
[small]
Input=sp
Type=Pool
PoolSize=2
Stride=2
Pooling=Max
Mapping.Size=1
"""


@pytest.mark.parametrize("body,message", [
    (TWO_SIZES + "[x]\nInput=sp,small\nType=Fc\nNbOutputs=2\n",
     r"\[x\] Input: inputs concatenated on channels must have the same size: sp is 8x8, "
     r"small is 4x4"),
    (TWO_SIZES + "[x]\nInput=sp,small\nType=ElemWise\nOperation=Sum\n",
     r"\[x\] Input: all inputs of an ElemWise cell must have the same shape"),
    ("[x]\nInput=sp\nType=Conv\nKernelSize=1\nNbOutputs=2\nMapping(sp)=1 0 1\n",
     r"\[x\] Mapping\(sp\): has 3 values, expected 3 rows \(input channels\) x 2 columns"),
    ("[x]\nInput=sp\nType=Conv\nKernelSize=1\nNbOutputs=2\nMapping(conv0)=1 0 1 1 0 1\n",
     r"\[x\] Mapping\(conv0\): names no input of this cell \(inputs: sp\)"),
    ("[x]\nInput=sp\nType=Conv\nKernelSize=1\nNbOutputs=4\nMapping.NbGroups=2\n",
     r"\[x\] Mapping.NbGroups: 2 does not divide the 3 input channels"),
    ("[x]\nInput=sp\nType=Conv\nKernelSize=1\nNbOutputs=3\nMapping.NbGroups=3\n"
     "Mapping.ChannelsPerGroup=1\n", r"mutually exclusive"),
    ("[x]\nInput=sp\nType=Conv\nKernelSize=1\nNbOutputs=2\nMapping.Sise=1\n",
     r"\[x\] Mapping.Sise: unknown mapping key"),
    ("[x]\nInput=sp\nType=Conv\nKernelSize=0\nNbOutputs=2\n", r"\[x\] KernelSize: must be >= 1"),
    ("[x]\nInput=sp\nType=Pool\nPoolDims=2 2\nPaddingX=-1\nPooling=Max\n",
     r"\[x\] PaddingX: must be >= 0, got -1 0"),
    ("[x]\nInput=sp\nType=Conv\nNbOutputs=2\n", r"\[x\] missing key KernelDims"),
    ("[x]\nInput=sp\nType=Dropout\nDropout=1.5\n", r"\[x\] Dropout: the dropping probability"),
    ("[x]\nInput=sp\nType=Reshape\nDims=5 5\n", r"\[x\] Dims: Dims 5 5 1 hold 25 values, the "
     r"input has 192"),
    ("[x]\nInput=\nType=Fc\nNbOutputs=2\n", r"\[x\] Input: is empty"),
    # shape-preserving cells (Cell.from_section + section_args): each error at its key
    ("[x]\nInput=sp\nType=Scaling\nFactor=1 2\n",
     r"\[x\] Factor: give 1 factor or 3 \(one per channel\), got 2$"),
    ("[x]\nInput=sp\nType=BatchNorm\nEpsilon=0\n", r"\[x\] Epsilon: must be > 0, got 0.0$"),
    ("[x]\nInput=sp\nType=BatchNorm\nMovingAverageMomentum=2\n",
     r"\[x\] MovingAverageMomentum: must be in \[0, 1\], got 2.0$"),
    ("[x]\nInput=sp\nType=Resize\nOutputHeight=0\nOutputWidth=4\nMode=Bilinear\n",
     r"\[x\] OutputHeight: must be > 0, got 0$"),
    ("[x]\nInput=sp\nType=Softmax\nNbOutputs=4\n",
     r"\[x\] NbOutputs: is 4 but the input has 3 channels: set NbOutputs=3$"),
    ("[x]\nInput=sp\nType=Activation\nNbOutputs=2\nActivationFunction=Rectifier\n",
     r"\[x\] NbOutputs: is 2 but the input has 3 channels"),
    ("[x]\nInput=sp\nType=Padding\nTopPadding=-4\nBottomPadding=-4\n",
     r"\[x\] the output of x would be empty \(width x height: input 8x8, output 8x0\)"),
    ("[x]\nInput=sp\nType=Dropout\nDropoutRate=0.5\n",
     r"\[x\] DropoutRate: unknown key for a Dropout cell"),
])
def test_located_errors(tmp_path, body, message):
    target = "x"
    with pytest.raises(UserError, match=message):
        build(tmp_path, body + f"[{target}.Target]\n")
