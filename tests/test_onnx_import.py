"""ONNX import (spec/onnx.md): predictions equal onnxruntime's, N2D2 cell naming, the INI
overrides, and the errors. Graphs are built by tests/test_onnx_graphs.py (zoo-shaped)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import (  # noqa: E402
    HEADER,
    MISC_ALIASES,
    MISC_CELLS,
    RESNET18V1_RELUS,
    assert_matches_onnxruntime,
    build,
    misc_ops_graph,
    mobilenetv2_like,
    n2q_output,
    rand,
    resnet18v1,
    run_onnxruntime,
    torch_cnn_export,
    write_ini,
)

from n2q.errors import UserError  # noqa: E402
from n2q.net import build_network  # noqa: E402
from n2q.net.onnx_file import config_for_onnx_file  # noqa: E402
from n2q.net.onnx_ops import ONNX_OPS  # noqa: E402

SMALL = {"size": 32, "classes": 10, "widths": (8, 16, 16, 32)}


# -- predictions and naming ----------------------------------------------------------------------
def test_resnet18v1_opset7_matches_onnxruntime_with_zoo_names(tmp_path: Path) -> None:
    model = resnet18v1(**SMALL)
    ini = write_ini(tmp_path, model, "{ONNX}\n[resnetv15_dense0_fwd.Target]\n")
    net = build(ini, (3, 32, 32))
    assert_matches_onnxruntime(net, model, rand(1, 3, 32, 32))
    # cells are the nodes' first outputs, minus the ReLUs (activations) and the Flatten
    nodes = [n.output[0] for n in model.graph.node]
    expected = [n for n in nodes if n not in RESNET18V1_RELUS and n != "flatten_170"]
    assert list(net.cells.keys()) == expected
    assert net.cells["resnetv15_conv0_fwd"].type == "Conv"
    assert net.cells["resnetv15_pool0_fwd"].type == "Pool"
    assert net.cells["resnetv15_stage1__plus0"].type == "ElemWise"
    assert net.cells["resnetv15_dense0_fwd"].type == "Fc"
    # a ReLU is the activation of the cell before it, the one after an Add included
    assert type(net.cells["resnetv15_batchnorm0_fwd"].activation).__name__ == "Rectifier"
    assert type(net.cells["resnetv15_stage2__plus1"].activation).__name__ == "Rectifier"
    assert type(net.cells["resnetv15_stage2_batchnorm1_fwd"].activation).__name__ == \
        "Identity"
    assert net.inputs["resnetv15_stage2_conv2_fwd"] == ["resnetv15_stage1__plus1"]
    assert net.inputs["resnetv15_dense0_fwd"] == ["resnetv15_pool1_fwd"]


def test_batch_of_several_stimuli(tmp_path: Path) -> None:
    model = resnet18v1(**SMALL)
    net = build(write_ini(tmp_path, model, "{ONNX}\n[resnetv15_dense0_fwd.Target]\n"),
                (3, 32, 32))
    x = rand(3, 3, 32, 32, seed=4)
    ref = np.concatenate([run_onnxruntime(model, x[i:i + 1]) for i in range(3)])
    assert np.abs(n2q_output(net, x) - ref).max() <= 1e-4 * max(1, np.abs(ref).max())


def test_mobilenetv2_like_matches_onnxruntime(tmp_path: Path) -> None:
    model = mobilenetv2_like()
    ini = write_ini(tmp_path, model, "{ONNX}\n[mobilenetv20_output_pred_fwd.Target]\n")
    net = build(ini, (3, 32, 32))
    assert_matches_onnxruntime(net, model, rand(1, 3, 32, 32))
    dw = net.cells["mobilenetv20_features_linearbottleneck1_conv1_fwd"]
    assert dw.groups == 96 and tuple(dw.weight.shape) == (96, 1, 3, 3)
    relu6 = net.cells["mobilenetv20_features_batchnorm0_fwd"].activation
    assert type(relu6).__name__ == "Rectifier" and relu6.clipping == 6.0


@pytest.mark.filterwarnings("ignore")
def test_pytorch_export_with_batchnorm_matches_onnxruntime(tmp_path: Path) -> None:
    path = torch_cnn_export(tmp_path / "model.onnx")
    ini = write_ini(tmp_path, None, "{ONNX}\n[logits.Target]\n", h=16)
    net = build(ini, (3, 16, 16))
    assert_matches_onnxruntime(net, path, rand(1, 3, 16, 16))
    assert [c.type for c in net.cells.values()].count("BatchNorm") == 2
    bn = net.cells["/1/BatchNormalization_output_0"]
    ref = onnx.numpy_helper.to_array(next(t for t in onnx.load(str(path)).graph.initializer
                                          if t.name == "1.running_var"))
    assert np.allclose(bn.running_var.numpy(), ref)
    assert type(net.cells["/5/BatchNormalization_output_0"].activation).__name__ == "Rectifier"
    assert net.cells["/5/BatchNormalization_output_0"].activation.leak_slope == \
        pytest.approx(0.1)


def test_every_other_translation_matches_onnxruntime(tmp_path: Path) -> None:
    model = misc_ops_graph()
    ini = write_ini(tmp_path, model, "{ONNX}\n[sm.Target]\n", h=12, w=10)
    net = build(ini, (3, 12, 10))
    assert_matches_onnxruntime(net, model, rand(1, 3, 12, 10))
    assert list(net.cells.keys()) == MISC_CELLS
    types = {n: c.type for n, c in net.cells.items()}
    assert types["a_padding"] == "Padding" and types["cat"] == "Activation"
    assert types["r"] == "Activation"          # its input has two readers: not folded
    assert types["mm"] == "Fc" and net.cells["mm"].bias is not None
    assert types["do"] == "Dropout" and net.cells["do"].p == pytest.approx(0.3)
    assert type(net.cells["a"].activation).__name__ == "Logistic"
    pads = net.cells["a_padding"]
    assert pads.out_shape == (3, 13, 11)
    for alias, cell in MISC_ALIASES.items():  # INI layers may name the folded outputs
        assert alias not in net.cells
        assert net.cells[cell] is not None


@pytest.mark.parametrize("op", sorted(ONNX_OPS))
def test_every_registered_op_is_covered_by_a_test_graph(op: str) -> None:
    used = {n.op_type for m in (resnet18v1(**SMALL), mobilenetv2_like(), misc_ops_graph())
            for n in m.graph.node}
    used |= {"GlobalMaxPool", "Identity", "Reshape", "Tanh", "Softplus", "Sum", "Gemm",
             "BatchNormalization", "Squeeze", "Unsqueeze"}  # exercised below / by torch export
    assert op in used


@pytest.mark.parametrize("op,act", [("Tanh", "Tanh"), ("Softplus", "Softplus")])
def test_other_activations_fold(tmp_path: Path, op: str, act: str) -> None:
    from helpers import GraphBuilder

    g = GraphBuilder(3)
    g.conv("data", "c", 3, 4, 3, 1, 1, bias=True)
    g.node(op, ["c_fwd"], "act")
    g.node("GlobalMaxPool", ["act"], "gmp")
    g.node("Identity", ["gmp"], "id")
    axes = g.param("axes", np.zeros(2))
    g.inits[-1] = onnx.numpy_helper.from_array(np.array([2, 3], np.int64), axes)
    g.node("Squeeze", ["id", axes], "sq")
    g.node("Unsqueeze", ["sq", axes], "usq")
    g.node("Sum", ["usq", "gmp"], "sum")
    model = g.model([("data", [1, 3, 8, 8])], "sum", [1, 4, 1, 1], 13)
    net = build(write_ini(tmp_path, model, "{ONNX}\n[sum.Target]\n", h=8), (3, 8, 8))
    assert_matches_onnxruntime(net, model, rand(1, 3, 8, 8))
    assert type(net.cells["c_fwd"].activation).__name__ == act
    assert list(net.cells.keys()) == ["c_fwd", "gmp", "sum"]


# -- keys of the ONNX section --------------------------------------------------------------------
def test_ignore_input_size_runs_the_graph_at_the_provider_size(tmp_path: Path) -> None:
    model = resnet18v1(**SMALL)   # the file says 32x32; the provider gives 48x40
    body = "{ONNX}\n[resnetv15_dense0_fwd.Target]\n"
    with pytest.raises(UserError, match="IgnoreInputSize=1"):
        build(write_ini(tmp_path, model, body, h=48, w=40), (3, 48, 40))
    net = build(write_ini(tmp_path, model, body, h=48, w=40, onnx_keys="IgnoreInputSize=1"),
                (3, 48, 40))
    reference = resnet18v1(**{**SMALL, "size": 32})   # same weights (same seed)
    reference.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 48
    reference.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 40
    assert_matches_onnxruntime(net, reference, rand(1, 3, 48, 40))


def test_symbolic_input_size_takes_the_provider_size(tmp_path: Path) -> None:
    from helpers import GraphBuilder

    g = GraphBuilder(5)
    g.conv("data", "c", 3, 4, 3, 2, 1, bias=True)
    g.node("GlobalAveragePool", ["c_fwd"], "gap")
    model = g.model([("data", ["N", 3, "H", "W"])], "gap", ["N", 4, 1, 1], 13)
    net = build(write_ini(tmp_path, model, "{ONNX}\n[gap.Target]\n", h=20, w=12), (3, 20, 12))
    assert net.cells["c_fwd"].out_shape == (4, 10, 6)
    assert_matches_onnxruntime(net, model, rand(1, 3, 20, 12))


@pytest.mark.filterwarnings("ignore")
def test_transpose_swaps_height_and_width(tmp_path: Path) -> None:
    path = torch_cnn_export(tmp_path / "model.onnx", size=16, width=24)   # graph: 16x24
    ini = write_ini(tmp_path, None, "{ONNX}\n[logits.Target]\n", h=24, w=16,
                    onnx_keys="Transpose=1")
    net = build(ini, (3, 24, 16))
    x = rand(1, 3, 24, 16)
    ref = run_onnxruntime(path, np.ascontiguousarray(x.transpose(0, 1, 3, 2)))
    assert np.abs(n2q_output(net, x) - ref).max() <= 1e-4
    assert net.cells["/0/Conv_output_0"].out_shape == (8, 24, 16)


def test_transpose_with_asymmetric_pads_pools_and_matmul(tmp_path: Path) -> None:
    model = misc_ops_graph()                                   # graph: 3x12x10
    ini = write_ini(tmp_path, model, "{ONNX}\n[sm.Target]\n", h=10, w=12,
                    onnx_keys="Transpose=1")
    net = build(ini, (3, 10, 12))
    x = rand(1, 3, 10, 12)
    ref = run_onnxruntime(model, np.ascontiguousarray(x.transpose(0, 1, 3, 2)))
    assert np.abs(n2q_output(net, x) - ref).max() <= 1e-5
    assert net.cells["a_padding"].out_shape == (3, 11, 13)


def test_ignore_skips_nodes_by_output_or_operator(tmp_path: Path) -> None:
    model = misc_ops_graph()
    ini = write_ini(tmp_path, model, "{ONNX}\n[sm.Target]\n", h=12, w=10,
                    onnx_keys="Ignore=do Softmax")
    net = build(ini, (3, 12, 10))
    assert "do" not in net.cells and "sm" not in net.cells
    assert net.targets[0].cell == "mm"
    with pytest.raises(UserError, match=r"'dropout' is neither.*closest"):
        build(write_ini(tmp_path, model, "{ONNX}\n[sm.Target]\n", h=12, w=10,
                        onnx_keys="Ignore=dropout"), (3, 12, 10))


def test_file_relative_to_the_ini_or_from_n2q_models(tmp_path: Path, monkeypatch) -> None:
    zoo = tmp_path / "zoo" / "ONNX" / "resnet-18-v1"
    zoo.mkdir(parents=True)
    onnx.save(resnet18v1(**SMALL), str(zoo / "resnet18v1.onnx"))
    monkeypatch.setenv("N2Q_MODELS", str(tmp_path / "zoo"))
    ini = tmp_path / "net.ini"
    ini.write_text(HEADER.format(h=32, w=32) + "[onnx]\nInput=sp\nType=ONNX\n"
                   "File=${N2Q_MODELS}/ONNX/resnet-18-v1/resnet18v1.onnx\n"
                   "[resnetv15_dense0_fwd.Target]\n")
    assert "resnetv15_conv0_fwd" in build(ini, (3, 32, 32)).cells
    ini.write_text(ini.read_text().replace("${N2Q_MODELS}/ONNX", "missing"))
    with pytest.raises(UserError, match=r"net.ini:\d+: \[onnx\] File: ONNX file not found.*"
                       "install_onnx_models"):
        build(ini, (3, 32, 32))


def test_onnx_init_0_keeps_the_ini_fillers(tmp_path: Path) -> None:
    body = """
[onnx:Conv_def]
WeightsFiller=ConstantFiller
WeightsFiller.Value=0.25
[onnx:BatchNorm_def]
{ONNX}
[resnetv15_dense0_fwd.Target]
"""
    model = resnet18v1(**SMALL)
    net = build(write_ini(tmp_path, model, body, onnx_keys="ONNX_init=0"), (3, 32, 32))
    assert torch.all(net.cells["resnetv15_stage3_conv1_fwd"].weight == 0.25)
    bn = net.cells["resnetv15_batchnorm0_fwd"]
    assert torch.all(bn.running_var == 1) and torch.all(bn.weight == 1)
    net = build(write_ini(tmp_path, model, body, onnx_keys="ONNX_init=1"), (3, 32, 32))
    w = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer
                                        if t.name == "resnetv15_stage3_conv1_weight"))
    assert np.array_equal(net.cells["resnetv15_stage3_conv1_fwd"].weight.detach().numpy(), w)


# -- INI overrides -------------------------------------------------------------------------------
SEED_RECIPE = """
[onnx:Conv_def]
QWeight=SAT
QWeight.ApplyScaling=0
QWeight.ApplyQuantization=0
WeightsFiller=XavierFiller
WeightsFiller.VarianceNorm=FanOut
ConfigSection=conv.config
[conv.config]
NoBias=1
Solvers.LearningRate=0.05
[onnx:Fc_def]
QWeight=SAT
QWeight.ApplyScaling=1
ConfigSection=fc.config
[fc.config]
NoBias=0
Solvers.LearningRate=0.05
[onnx:BatchNorm_def]
ConfigSection=bn_train.config
[bn_train.config]
Solvers.LearningRate=0.02
[onnx:Pool_def]
[ReluQ_def]
ActivationFunction=Linear
QAct=SAT
QAct.Range=15
QActSolver=SGD
{RELUS}
[resnetv15_conv0_fwd]onnx:Conv_def
QWeight.Range=255
[resnetv15_dense0_fwd]onnx:Fc_def
QWeight.Range=255
{ONNX}
[soft1]
Input=resnetv15_dense0_fwd
Type=Softmax
NbOutputs=10
WithLoss=1
[soft1.Target]
"""


def seed_recipe(relus=RESNET18V1_RELUS) -> str:
    return SEED_RECIPE.replace("{RELUS}", "\n".join(f"[{r}]ReluQ_def" for r in relus))


def test_def_blocks_and_node_overrides_land_on_the_intended_cells(tmp_path: Path) -> None:
    net = build(write_ini(tmp_path, resnet18v1(**SMALL), seed_recipe()), (3, 32, 32))
    convs = [c for c in net.cells.values() if c.type == "Conv"]
    assert len(convs) == 20
    for cell in convs:
        sec = cell.section
        assert sec.str("QWeight") == "SAT" and sec.str("WeightsFiller") == "XavierFiller"
        assert sec.float("Solvers.LearningRate") == 0.05 and cell.bias is None
        assert sec.str("QWeight.Range", None) == ("255" if cell.name == "resnetv15_conv0_fwd"
                                                  else None)
    dense = net.cells["resnetv15_dense0_fwd"]
    assert dense.section.str("QWeight.ApplyScaling") == "1" and dense.bias is not None
    assert dense.section.str("QWeight.Range") == "255"
    for cell in net.cells.values():
        if cell.type == "BatchNorm":
            assert cell.section.float("Solvers.LearningRate") == 0.02
    # the 17 ReLUs: their cell has a Linear activation and the QAct keys, no other cell does
    with_qact = sorted(n for n, c in net.cells.items() if "QAct" in c.section)
    assert len(with_qact) == 17
    assert "resnetv15_batchnorm0_fwd" in with_qact and "resnetv15_stage4__plus1" in with_qact
    for name in with_qact:
        sec = net.cells[name].section
        assert sec.str("ActivationFunction") == "Linear" and sec.int("QAct.Range") == 15
        assert type(net.cells[name].activation).__name__ in ("Identity", "Linear")
    assert net.inputs["soft1"] == ["resnetv15_dense0_fwd"]
    assert [t.cell for t in net.targets] == ["soft1"]


@pytest.mark.filterwarnings("ignore")
def test_pool_and_dropout_def_blocks_land_on_every_node_of_their_kind(tmp_path: Path) -> None:
    body = """
[onnx:Pool_def]
QAct=SAT
QAct.Range=15
[onnx:Dropout_def]
Dropout=0.6
[onnx:BatchNorm_def]
Epsilon=0.001
{ONNX}
[sm.Target]
"""
    net = build(write_ini(tmp_path, misc_ops_graph(), body, h=12, w=10), (3, 12, 10))
    pools = sorted(n for n, c in net.cells.items() if c.type == "Pool")
    assert pools == ["ap", "mp"]
    assert sorted(n for n, c in net.cells.items() if "QAct" in c.section) == pools
    assert net.cells["ap"].section.int("QAct.Range") == 15
    assert net.cells["do"].p == pytest.approx(0.6)     # the INI wins over the graph's 0.3
    path = tmp_path / "model.onnx"
    torch_cnn_export(path)
    net = build(write_ini(tmp_path, None, body.replace("sm.Target", "logits.Target"), h=16),
                (3, 16, 16))
    bns = [c for c in net.cells.values() if c.type == "BatchNorm"]
    assert len(bns) == 2 and all(c.eps == pytest.approx(1e-3) for c in bns)


def test_nobias_in_the_ini_drops_the_graph_bias_with_a_notice(tmp_path: Path, capsys) -> None:
    body = "[onnx:Conv_def]\nNoBias=1\n{ONNX}\n[sm.Target]\n"
    net = build(write_ini(tmp_path, misc_ops_graph(), body, h=12, w=10), (3, 12, 10))
    assert net.cells["a"].bias is None
    assert "1 parameter(s) of the graph not imported" in capsys.readouterr().err


def test_node_section_replaces_the_def_block(tmp_path: Path) -> None:
    body = """
[onnx:Conv_def]
WeightsFiller=ConstantFiller
WeightsFiller.Value=0.5
[resnetv15_conv0_fwd]
NoBias=0
{ONNX}
[resnetv15_dense0_fwd.Target]
"""
    net = build(write_ini(tmp_path, resnet18v1(**SMALL), body, onnx_keys="ONNX_init=0"),
                (3, 32, 32))
    stem = net.cells["resnetv15_conv0_fwd"]
    assert "WeightsFiller" not in stem.section and stem.bias is not None
    assert torch.all(net.cells["resnetv15_stage1_conv0_fwd"].weight == 0.5)
    assert net.cells["resnetv15_stage1_conv0_fwd"].bias is None   # the graph has none


def test_section_of_an_unfolded_relu_replaces_its_function(tmp_path: Path) -> None:
    body = "[r]\nActivationFunction=Saturation\nActivationFunction.Threshold=2.0\n" \
           "{ONNX}\n[sm.Target]\n"
    net = build(write_ini(tmp_path, misc_ops_graph(), body, h=12, w=10), (3, 12, 10))
    act = net.cells["r"].activation
    assert type(act).__name__ == "Saturation" and act.threshold == 2.0


def test_onnx_prefixed_node_sections(tmp_path: Path) -> None:
    """``[onnx:<output>]`` and ``[onnx:<node name>]`` configure one node too (N2D2's
    MobileNet_v1_ONNX_transfer.ini writes ``[onnx:Conv__250]``)."""
    from helpers import GraphBuilder

    g = GraphBuilder()
    g.node("Conv", ["data", g.param("w1", np.ones((4, 3, 3, 3)))], "Conv__250:0",
           name="Conv__250", kernel_shape=[3, 3])
    g.node("Conv", ["Conv__250:0", g.param("w2", np.ones((2, 4, 1, 1)))], "Conv__252:0",
           name="Conv__252", kernel_shape=[1, 1])
    model = g.model([("data", [1, 3, 8, 8])], "Conv__252:0", [1, 2, 6, 6], 13)
    body = """[notrain.config]
BackPropagate=0
[onnx:Conv_def]
NoBias=0
[onnx:Conv__250]
ConfigSection=notrain.config
[onnx:Conv__252:0]
QWeight=SAT
{ONNX}
[Conv__252:0.Target]
"""
    net = build(write_ini(tmp_path, model, body, h=8), (3, 8, 8))
    first, second = net.cells["Conv__250:0"], net.cells["Conv__252:0"]
    assert first.back_propagate is False and first.bias is None   # not the _def block
    assert second.section.str("QWeight") == "SAT" and second.bias is None


def test_ini_layer_may_read_a_folded_relu_output(tmp_path: Path) -> None:
    body = "{ONNX}\n[extra]\nInput=resnetv15_stage4_activation1\nType=Pool\nPoolDims=1 1\n" \
           "Pooling=Max\nMapping.ChannelsPerGroup=1\n[extra.Target]\n"
    net = build(write_ini(tmp_path, resnet18v1(**SMALL), body), (3, 32, 32))
    assert net.inputs["extra"] == ["resnetv15_stage4__plus1"]


@pytest.mark.parametrize("section,message", [
    ("[onnx:Conv_def]\n[resnetv15_conv99_fwd]onnx:Conv_def\n",
     r"\[resnetv15_conv99_fwd\] names no node.*closest node names: resnetv15_conv0_fwd"),
    ("[ReluQ_def]\nQAct=SAT\n[resnetv15_relu9_fwd]ReluQ_def\n",
     r"\[resnetv15_relu9_fwd\] names no node.*closest node names: resnetv15_relu0_fwd"),
    ("[resnetv15_stage1_conv0_fw]\nNoBias=1\n",
     r"\[resnetv15_stage1_conv0_fw\] names no node.*resnetv15_stage1_conv0_fwd"),
    ("[onnx:Convolution_def]\n",
     r"'Convolution_def' is neither a block kind \(.*onnx:Conv_def.*\) nor a node"),
    ("[onnx:Conv_def]\nKernelDims=3 3\n",
     r"\[onnx:Conv_def\] KernelDims: is fixed by the ONNX graph"),
    ("[onnx:Pool_def]\nMapping.Size=1\n", r"Mapping.Size: is fixed by the ONNX graph"),
    ("[onnx:Conv_def]\nKernelDim=3\n", r"KernelDim: unknown key for a Conv cell"),
    ("[resnetv15_relu0_fwd]\nNoBias=1\n",
     r"\[resnetv15_relu0_fwd\] NoBias: cannot be set here.*folds into "
     "'resnetv15_batchnorm0_fwd'"),
    ("[resnetv15_conv0_fwd]\nInput=sp\nType=Conv\nKernelSize=3\nNbOutputs=4\n",
     r"Input: this section is a layer named"),
])
def test_override_errors_are_located_and_say_what_to_do(tmp_path: Path, section: str,
                                                        message: str) -> None:
    body = section + "{ONNX}\n[resnetv15_dense0_fwd.Target]\n"
    with pytest.raises(UserError, match=message) as err:
        build(write_ini(tmp_path, resnet18v1(**SMALL), body), (3, 32, 32))
    assert str(err.value).startswith(str(tmp_path / "net.ini") + ":")


def test_unsupported_operator_names_node_type_and_opset(tmp_path: Path) -> None:
    from helpers import GraphBuilder

    g = GraphBuilder()
    g.conv("data", "c", 3, 4, 3)
    g.node("LpNormalization", ["c_fwd"], "norm", name="lp_node")
    model = g.model([("data", [1, 3, 8, 8])], "norm", [1, 4, 6, 6], 13)
    with pytest.raises(UserError, match=r"\[onnx\] File: model.onnx: node 'norm' \(node "
                       r"'lp_node'\) \[LpNormalization, opset 13\]: ONNX operator "
                       r"LpNormalization has no n2q cell and onnx2torch has no converter for "
                       "it at opset 13.*Ignore=norm"):
        build(write_ini(tmp_path, model, "{ONNX}\n[norm.Target]\n", h=8), (3, 8, 8))


def test_operator_without_cell_runs_as_an_onnx2torch_float_cell(tmp_path: Path) -> None:
    from helpers import googlenet_like

    model = googlenet_like()
    net = build(write_ini(tmp_path, model, "{ONNX}\n[prob_1.Target]\n"), (3, 32, 32))
    assert_matches_onnxruntime(net, model, rand(2, 3, 32, 32)[:1])
    lrn = net.cells["pool1/norm1_1"]
    assert lrn.type == "ONNX:LRN" and lrn.out_shape == (8, 8, 8)
    assert net.cells["pool1/3x3_s2_1_padding"].type == "Padding"
    assert type(net.cells["conv1/7x7_s2_fwd"].activation).__name__ == "Rectifier"
    x = rand(3, 3, 32, 32, seed=5)   # the wrapped module takes batches too
    ref = np.concatenate([run_onnxruntime(model, x[i:i + 1]) for i in range(3)])
    assert np.abs(n2q_output(net, x) - ref).max() <= 1e-5


def test_config_for_onnx_file_sizes_the_provider_from_the_graph(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(resnet18v1(**{**SMALL, "size": 40}), str(path))
    cfg = config_for_onnx_file(path)
    assert cfg.path == path.resolve()
    sp = cfg["sp"]
    assert (sp.int("SizeX"), sp.int("SizeY"), sp.int("NbChannels"), sp.int("BatchSize")) == \
        (40, 40, 3, 32)
    assert cfg["onnx"].str("Type") == "ONNX" and "resnetv15_dense0_fwd.Target" in cfg
    net = build_network(cfg, (3, 40, 40), quantize=False)
    assert net.targets[0].cell == "resnetv15_dense0_fwd"
    with pytest.raises(UserError, match="is not an ONNX model"):
        (tmp_path / "bad.onnx").write_bytes(b"not a model")
        config_for_onnx_file(tmp_path / "bad.onnx")


def test_config_for_onnx_file_picks_the_data_set_from_the_input_size(tmp_path: Path) -> None:
    from helpers import GraphBuilder

    for dims, database in (((1, 28, 28), "MNIST_IDX_Database"),
                           ((3, 32, 32), "CIFAR10_Database"),
                           ((3, 64, 48), "ILSVRC2012_Database")):
        g = GraphBuilder()
        g.conv("data", "c", dims[0], 2, 3)
        path = tmp_path / f"m{dims[0]}.onnx"
        onnx.save(g.model([("data", [1, *dims])], "c_fwd", [1, 2, dims[1] - 2, dims[2] - 2], 13),
                  str(path))
        cfg = config_for_onnx_file(path)
        assert cfg["database"].str("Type") == database
        transformations = [s.name for s in cfg.sections if s.name.startswith("sp.")]
        assert bool(transformations) == (database == "ILSVRC2012_Database")
    crop = cfg["sp.Transformation-2"]
    assert (crop.int("Width"), crop.int("Height")) == (48, 64)


@pytest.mark.filterwarnings("ignore")
def test_n2q_runs_an_onnx_file_on_mnist(tmp_path: Path, test_data: Path) -> None:
    """``n2q model.onnx -test``: the default provider reads MNIST for a 1x28x28 graph; the
    recognition rate n2q prints is the one onnxruntime's predictions give on the same
    digits."""
    import gzip
    import os
    import re
    import subprocess
    import warnings

    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 5), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 12 * 12, 10)).eval()
    with torch.no_grad():   # a "trained" model: mean intensity of 10 fixed regions
        model[5].weight.normal_(0, 0.3)
    path = tmp_path / "mnist.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False,
                          do_constant_folding=False, input_names=["x"],
                          output_names=["logits"], opset_version=13)
    n = 200
    env = {**os.environ, "N2Q_DATA": str(test_data)}
    run = subprocess.run([sys.executable, "-m", "n2q", str(path), "-test", "-nb-test", str(n)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rate = float(re.search(r"Final recognition rate: ([\d.]+)%", run.stdout).group(1))
    with gzip.open(test_data / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(test_data / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    predicted = np.concatenate([run_onnxruntime(path, images[i:i + 1] / 255.0).argmax(1)
                                for i in range(n)])
    assert rate == pytest.approx(100.0 * (predicted == labels).mean(), abs=0.01)
