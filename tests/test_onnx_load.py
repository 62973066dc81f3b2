"""Loading an ONNX file (spec/onnx.md, Conversion): the spatial=0 BatchNormalization rewrite
and the opset upgrade really happen, operators without n2q cell really run through
onnx2torch, and unsupported operators or opsets give one line naming the node, its op type and
opset, and what to do (exit status 2 from the command line)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper, version_converter

sys.path.insert(0, str(Path(__file__).parent))
from helpers import (  # noqa: E402
    GraphBuilder,
    assert_matches_onnxruntime,
    build,
    rand,
    resnet18v1,
    run_onnxruntime,
    write_ini,
)

from n2q.errors import UserError  # noqa: E402
from n2q.net.onnx_graph import GraphError, load_graph  # noqa: E402

SMALL = {"size": 32, "classes": 10, "widths": (8, 8, 16, 16)}


def spatial_attrs(model: onnx.ModelProto) -> list[int]:
    return [a.i for n in model.graph.node if n.op_type == "BatchNormalization"
            for a in n.attribute if a.name == "spatial"]


# -- the repairs of the zoo's opset-7 graphs ----------------------------------------------------
def test_resnet18v1_file_is_rewritten_then_upgraded_to_opset_9(tmp_path: Path) -> None:
    model = resnet18v1(**SMALL)
    assert spatial_attrs(model) == [0] * 20 and model.opset_import[0].version == 7
    with pytest.raises(Exception, match="spatial must have value 1"):   # why the rewrite
        version_converter.convert_version(model, 9)
    graph = load_graph(tmp_path / "r.onnx", None, model)
    assert (graph.file_opset, graph.opset) == (7, 9)
    assert graph.model.opset_import[0].version == 9 and spatial_attrs(graph.model) == []
    assert graph.notes == ["20 BatchNormalization node(s) with spatial=0 and per-channel "
                           "parameters read as spatial=1", "graph upgraded from opset 7 to 9"]
    assert graph.opset_label == "opset 7, upgraded to 9"


def test_import_tells_the_user_about_both_repairs(tmp_path: Path, capsys) -> None:
    model = resnet18v1(**SMALL)
    net = build(write_ini(tmp_path, model, "{ONNX}\n[resnetv15_dense0_fwd.Target]\n"),
                (3, 32, 32))
    err = capsys.readouterr().err
    assert f"Notice: {tmp_path / 'net.ini'}:6: [onnx] 20 BatchNormalization node(s)" in err
    assert "[onnx] graph upgraded from opset 7 to 9" in err
    assert_matches_onnxruntime(net, model, rand(1, 3, 32, 32, seed=3))


def test_mxnet_opset7_mobilenetv2_pieces_match_onnxruntime(tmp_path: Path) -> None:
    """The zoo's mobilenetv2-7 is MXNet opset 7 too: Clip-6 with min/max ATTRIBUTES as ReLU6,
    spatial=0 BatchNormalization, depthwise conv, Reshape by a constant listed as an input."""
    g = GraphBuilder(5, params_as_inputs=True)
    x = g.conv("data", "m_conv0", 3, 8, 3, 2, 1)
    x = g.node("Clip", [g.batchnorm(x, "m_bn0", 8, spatial0=True)], "m_relu0_fwd", min=0.0,
               max=6.0)
    y = g.conv(x, "m_dw", 8, 8, 3, 1, 1, group=8)
    y = g.node("Clip", [g.batchnorm(y, "m_bn1", 8, spatial0=True)], "m_relu1_fwd", min=0.0,
               max=6.0)
    y = g.batchnorm(g.conv(y, "m_pw", 8, 8, 1), "m_bn2", 8, spatial0=True)
    x = g.node("GlobalAveragePool", [g.node("Add", [y, x], "m_add")], "m_pool")
    x = g.conv(x, "m_pred", 8, 10, 1, bias=True)
    g.inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "shape"))
    g.node("Reshape", [x, "shape"], "m_out")
    model = g.model([("data", [1, 3, 16, 16])], "m_out", [1, 10], 7)
    net = build(write_ini(tmp_path, model, "{ONNX}\n[m_out.Target]\n", h=16), (3, 16, 16))
    assert list(net.cells) == ["m_conv0_fwd", "m_bn0_fwd", "m_dw_fwd", "m_bn1_fwd", "m_pw_fwd",
                               "m_bn2_fwd", "m_add", "m_pool", "m_pred_fwd"]
    relu6 = net.cells["m_bn1_fwd"].activation
    assert type(relu6).__name__ == "Rectifier" and relu6.clipping == 6.0
    assert_matches_onnxruntime(net, model, rand(1, 3, 16, 16, seed=6))


def test_an_opset_9_graph_is_not_upgraded(tmp_path: Path) -> None:
    g = GraphBuilder()
    g.batchnorm(g.conv("data", "c", 3, 4, 3), "bn", 4)
    graph = load_graph(tmp_path / "m.onnx", None,
                       g.model([("data", [1, 3, 8, 8])], "bn_fwd", [1, 4, 6, 6], 9))
    assert (graph.file_opset, graph.opset, graph.notes) == (9, 9, [])
    assert graph.opset_label == "opset 9"


def test_spatial0_with_per_element_parameters_is_refused(tmp_path: Path) -> None:
    g = GraphBuilder(params_as_inputs=True)
    x = g.conv("data", "c", 3, 2, 3)
    params = [g.param(f"p{i}", np.ones((2, 6, 6))) for i in range(4)]
    g.node("BatchNormalization", [x, *params], "bn_fwd", name="bn", spatial=0)
    model = g.model([("data", [1, 3, 8, 8])], "bn_fwd", [1, 2, 6, 6], 7)
    with pytest.raises(GraphError, match=r"node 'bn_fwd' \(node 'bn'\) \[BatchNormalization\]:"
                       r" BatchNormalization with spatial=0 and per-element parameters"):
        load_graph(tmp_path / "m.onnx", None, model)


# -- unsupported operators and opsets -----------------------------------------------------------
def one_op_graph(op: str, opset: int, **attrs) -> onnx.ModelProto:
    """data -> Conv 'c_fwd' -> ``op`` (node 'the_node', output 'out')."""
    g = GraphBuilder(params_as_inputs=opset < 9)
    g.conv("data", "c", 3, 4, 3)
    g.node(op, ["c_fwd"], "out", name="the_node", **attrs)
    graph = onnx.helper.make_graph(
        g.nodes, "g", [onnx.helper.make_tensor_value_info("data", 1, [1, 3, 8, 8])]
        + [onnx.helper.make_tensor_value_info(t.name, 1, list(t.dims)) for t in g.inits
           if opset < 9], [onnx.helper.make_tensor_value_info("out", 1, None)], g.inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = 3 if opset < 9 else 8
    return model


NEWEST = onnx.defs.onnx_opset_version()


@pytest.mark.parametrize("op,opset,message", [
    ("LpNormalization", 7, r"node 'out' \(node 'the_node'\) \[LpNormalization, opset 7, "
     r"upgraded to 9\]: ONNX operator LpNormalization has no n2q cell and onnx2torch has no "
     r"converter for it at opset 9: remove it from the graph, or skip it with Ignore=out"),
    ("Gelu", 20, r"\[Gelu, opset 20\]: ONNX operator Gelu has no n2q cell and onnx2torch has "
     "no converter for it at opset 20"),
    ("ImageScaler", 7, r"node 'out' \(node 'the_node'\) \[ImageScaler, opset 7\]: ImageScaler "
     r"is not a standard ONNX operator \(an experimental or removed one\): re-export the "
     rf"graph without it, with standard operators of opset 9..{NEWEST}"),
    ("HardSwish", 9, r"\[HardSwish, opset 9\]: HardSwish does not exist at opset 9: re-export"),
    ("Relu", NEWEST + 1, rf"the graph is opset {NEWEST + 1}, newer than the installed onnx "
     rf"package knows \(opset {NEWEST}\): re-export it with opset 9..{NEWEST} or upgrade"),
])
def test_unsupported_operators_and_opsets_name_node_type_and_opset(
        tmp_path: Path, op: str, opset: int, message: str) -> None:
    ini = write_ini(tmp_path, one_op_graph(op, opset), "{ONNX}\n[out.Target]\n", h=8)
    with pytest.raises(UserError, match=r"net.ini:\d+: \[onnx\] File: .*" + message) as err:
        build(ini, (3, 8, 8))
    assert "\n" not in str(err.value)


def test_the_command_line_prints_one_line_and_exits_2(tmp_path: Path, capsys,
                                                      monkeypatch) -> None:
    """``n2q model.onnx -test``: the INI is n2q's own, so the line names the .onnx file and
    the section, no line number; nothing is written."""
    from n2q.cli import main

    path = tmp_path / "lp.onnx"
    onnx.save(one_op_graph("LpNormalization", 13), str(path))
    monkeypatch.chdir(tmp_path)
    assert main([str(path), "-test"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error")]
    assert err == [f"Error: {path}: [onnx] File: lp.onnx: node 'out' (node 'the_node') "
                   "[LpNormalization, opset 13]: ONNX operator LpNormalization has no n2q cell "
                   "and onnx2torch has no converter for it at opset 13: remove it from the "
                   "graph, or skip it with Ignore=out"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lp.onnx"]


# -- operators without n2q cell: onnx2torch modules ----------------------------------------------
@pytest.fixture
def converted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The op types of the models n2q hands to ``onnx2torch.convert`` (one node each)."""
    import onnx2torch

    calls: list[str] = []
    real = onnx2torch.convert

    def spy(model: onnx.ModelProto, *args, **kwargs):
        calls.extend(f"{n.op_type}-{model.opset_import[0].version}" for n in model.graph.node)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnx2torch, "convert", spy)
    return calls


def fallback_graph(op: str) -> tuple[onnx.ModelProto, tuple[int, int, int]]:
    """Conv -> ``op`` (no n2q cell type) -> Relu, on a 3x8x8 input."""
    g = GraphBuilder(7)
    g.conv("data", "c", 3, 4, 3, pad=1, bias=True)
    out = (4, 8, 8)
    if op == "HardSwish":
        g.node("HardSwish", ["c_fwd"], "op")
        opset = 14
    elif op == "Resize":      # nearest 2x upsampling, scales as an initializer
        g.inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        g.node("Resize", ["c_fwd", "", "scales"], "op", mode="nearest")
        opset, out = 13, (4, 16, 16)
    elif op == "InstanceNormalization":
        scale = g.param("in_scale", g.rng.uniform(0.5, 1.5, 4))
        bias = g.param("in_bias", g.rng.normal(0, 0.1, 4))
        g.node("InstanceNormalization", ["c_fwd", scale, bias], "op", epsilon=1e-5)
        opset = 9
    g.node("Relu", ["op"], "relu")
    return g.model([("data", [1, 3, 8, 8])], "relu", [1, *out], opset), out


@pytest.mark.filterwarnings("ignore:Pytorch's nearest")   # onnx2torch on Resize's defaults
@pytest.mark.parametrize("op", ["HardSwish", "Resize", "InstanceNormalization"])
def test_operator_without_cell_is_an_onnx2torch_module(tmp_path: Path, op: str,
                                                       converted: list[str]) -> None:
    model, out = fallback_graph(op)
    net = build(write_ini(tmp_path, model, "{ONNX}\n[op.Target]\n", h=8), (3, 8, 8))
    cell = net.cells["op"]
    assert cell.type == f"ONNX:{op}" and cell.out_shape == out
    assert converted == [f"{op}-{model.opset_import[0].version}"]   # that node alone
    assert type(cell.activation).__name__ == "Rectifier"   # the Relu folded into it
    assert list(net.cells) == ["c_fwd", "op"]
    x = rand(2, 3, 8, 8, seed=9)
    ref = np.concatenate([run_onnxruntime(model, x[i:i + 1]) for i in range(2)])
    from helpers import n2q_output

    assert np.abs(n2q_output(net, x) - ref.reshape(2, -1)).max() <= 1e-5


def test_onnx2torch_converts_the_upgraded_node_of_an_opset_7_graph(tmp_path: Path,
                                                                   converted: list[str]) -> None:
    """LRN in an opset-7 graph with spatial=0 BatchNormalization: both repairs, then the
    node is converted by onnx2torch at opset 9."""
    g = GraphBuilder(4, params_as_inputs=True)
    x = g.batchnorm(g.conv("data", "c", 3, 6, 3, pad=1), "bn", 6, spatial0=True)
    x = g.node("Relu", [x], "relu")
    g.node("LRN", [x], "lrn", size=3, alpha=1e-2, beta=0.75, bias=1.0)
    model = g.model([("data", [1, 3, 8, 8])], "lrn", [1, 6, 8, 8], 7)
    net = build(write_ini(tmp_path, model, "{ONNX}\n[lrn.Target]\n", h=8), (3, 8, 8))
    assert net.cells["lrn"].type == "ONNX:LRN"
    assert converted == ["LRN-9"]
    assert type(net.cells["bn_fwd"].activation).__name__ == "Rectifier"
    assert_matches_onnxruntime(net, model, rand(1, 3, 8, 8, seed=2), "lrn")
