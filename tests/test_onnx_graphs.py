"""Zoo-shaped ONNX test graphs built with onnx.helper (random weights), and their checks.

The model zoo files cannot be downloaded here, so these builders reproduce their structure and
exact node names: ResNet-18 v1 as MXNet Gluon exported it (opset 7, BatchNormalization
``spatial=0``, parameters also listed as graph inputs), a MobileNet-v2-like graph (opset 11,
depthwise convolutions, Clip(0, 6), inverted residuals), and PyTorch exports. Other test files
import the builders from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh


class GraphBuilder:
    """Accumulates nodes and initializers; names follow the caller (MXNet-style here)."""

    def __init__(self, seed: int = 0, params_as_inputs: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.params_as_inputs = params_as_inputs

    def param(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str | None = None,
             **attrs) -> str:
        self.nodes.append(oh.make_node(op, inputs, [output], name=name or output, **attrs))
        return output

    def conv(self, x: str, name: str, c_in: int, c_out: int, k: int, stride: int = 1,
             pad: int = 0, group: int = 1, bias: bool = False) -> str:
        fan_in = c_in // group * k * k
        w = self.param(f"{name}_weight",
                       self.rng.normal(0, np.sqrt(2.0 / fan_in), (c_out, c_in // group, k, k)))
        inputs = [x, w]
        if bias:
            inputs.append(self.param(f"{name}_bias", self.rng.normal(0, 0.1, c_out)))
        return self.node("Conv", inputs, f"{name}_fwd", kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4, group=group,
                         dilations=[1, 1])

    def batchnorm(self, x: str, name: str, c: int, spatial0: bool = False) -> str:
        params = [self.param(f"{name}_gamma", self.rng.uniform(0.5, 1.5, c)),
                  self.param(f"{name}_beta", self.rng.normal(0, 0.1, c)),
                  self.param(f"{name}_running_mean", self.rng.normal(0, 0.1, c)),
                  self.param(f"{name}_running_var", self.rng.uniform(0.5, 1.5, c))]
        extra = {"spatial": 0} if spatial0 else {}
        return self.node("BatchNormalization", [x, *params], f"{name}_fwd", epsilon=1e-5,
                         momentum=0.9, **extra)

    def model(self, inputs: list[tuple[str, list[int]]], output: str, out_dims: list[int],
              opset: int) -> onnx.ModelProto:
        values = [oh.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in inputs]
        if self.params_as_inputs:  # what IR 3 exporters (MXNet) wrote
            values += [oh.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in self.inits]
        graph = oh.make_graph(self.nodes, "g", values,
                              [oh.make_tensor_value_info(output, TensorProto.FLOAT, out_dims)],
                              self.inits)
        model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
        model.ir_version = 3 if opset < 8 else 7
        onnx.checker.check_model(model)
        return model


def resnet18v1(size: int = 32, classes: int = 1000, widths=(64, 128, 256, 512),
               seed: int = 0) -> onnx.ModelProto:
    """The zoo's resnet18v1.onnx structure: MXNet Gluon names, opset 7, spatial=0 BN."""
    g = GraphBuilder(seed, params_as_inputs=True)
    x = g.conv("data", "resnetv15_conv0", 3, widths[0], 7, 2, 3)
    x = g.batchnorm(x, "resnetv15_batchnorm0", widths[0], spatial0=True)
    x = g.node("Relu", [x], "resnetv15_relu0_fwd")
    x = g.node("MaxPool", [x], "resnetv15_pool0_fwd", kernel_shape=[3, 3], pads=[1] * 4,
               strides=[2, 2])
    c_in = widths[0]
    for stage, c in enumerate(widths, start=1):
        p = f"resnetv15_stage{stage}_"
        conv = bn = 0
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            shortcut = x
            y = g.conv(x, f"{p}conv{conv}", c_in, c, 3, stride, 1)
            y = g.batchnorm(y, f"{p}batchnorm{bn}", c, spatial0=True)
            y = g.node("Relu", [y], f"{p}relu{block}_fwd")
            y = g.conv(y, f"{p}conv{conv + 1}", c, c, 3, 1, 1)
            y = g.batchnorm(y, f"{p}batchnorm{bn + 1}", c, spatial0=True)
            conv, bn = conv + 2, bn + 2
            if stride == 2:
                shortcut = g.conv(x, f"{p}conv{conv}", c_in, c, 1, 2, 0)
                shortcut = g.batchnorm(shortcut, f"{p}batchnorm{bn}", c, spatial0=True)
                conv, bn = conv + 1, bn + 1
            s = g.node("Add", [shortcut, y], f"{p}_plus{block}")
            x = g.node("Relu", [s], f"{p}activation{block}")
            c_in = c
    x = g.node("GlobalAveragePool", [x], "resnetv15_pool1_fwd")
    x = g.node("Flatten", [x], "flatten_170", axis=1)
    # scaled so that the logits are about unit-scale (tolerances are absolute)
    w = g.param("resnetv15_dense0_weight", g.rng.normal(0, 0.1 / np.sqrt(c_in), (classes, c_in)))
    b = g.param("resnetv15_dense0_bias", g.rng.normal(0, 0.1, classes))
    g.node("Gemm", [x, w, b], "resnetv15_dense0_fwd", alpha=1.0, beta=1.0, transA=0, transB=1)
    return g.model([("data", [1, 3, size, size])], "resnetv15_dense0_fwd", [1, classes], 7)


# The 17 ReLU outputs the seed's recipe overrides with ReluQ_def.
RESNET18V1_RELUS = ["resnetv15_relu0_fwd"] + [
    name for s in range(1, 5) for i in range(2)
    for name in (f"resnetv15_stage{s}_relu{i}_fwd", f"resnetv15_stage{s}_activation{i}")]


def mobilenetv2_like(size: int = 32, classes: int = 10, seed: int = 1) -> onnx.ModelProto:
    """MobileNet-v2 shapes: depthwise 3x3 (group = channels), Clip(0, 6) as ReLU6 with
    min/max inputs (opset 11), inverted residuals with Add, a 1x1 conv classifier, Flatten."""
    g = GraphBuilder(seed)
    lo = g.param("relu6_min", np.array(0.0))
    hi = g.param("relu6_max", np.array(6.0))
    p = "mobilenetv20_features_"

    def relu6(x: str, name: str) -> str:
        return g.node("Clip", [x, lo, hi], name)

    x = g.conv("data", f"{p}conv0", 3, 16, 3, 2, 1)
    x = relu6(g.batchnorm(x, f"{p}batchnorm0", 16), f"{p}relu0_fwd")
    c_in, n = 16, 1
    for i, (c, stride, expand) in enumerate([(16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6)]):
        b = f"{p}linearbottleneck{i}_"
        hidden = c_in * expand
        y = g.conv(x, f"{b}conv0", c_in, hidden, 1)
        y = relu6(g.batchnorm(y, f"{b}batchnorm0", hidden), f"{b}relu0_fwd")
        y = g.conv(y, f"{b}conv1", hidden, hidden, 3, stride, 1, group=hidden)
        y = relu6(g.batchnorm(y, f"{b}batchnorm1", hidden), f"{b}relu1_fwd")
        y = g.conv(y, f"{b}conv2", hidden, c, 1)
        y = g.batchnorm(y, f"{b}batchnorm2", c)
        if stride == 1 and c == c_in:
            y = g.node("Add", [y, x], f"{b}elemwise_add0")
        x, c_in, n = y, c, n + 1
    x = g.conv(x, f"{p}conv1", c_in, 64, 1)
    x = relu6(g.batchnorm(x, f"{p}batchnorm1", 64), f"{p}relu1_fwd")
    x = g.node("GlobalAveragePool", [x], f"{p}pool0_fwd")
    x = g.conv(x, "mobilenetv20_output_pred", 64, classes, 1, bias=True)
    shape = g.param("flatten_shape", np.array([1, -1]))
    g.inits[-1] = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), shape)
    g.node("Reshape", [x, shape], "mobilenetv20_output_flatten0_reshape0")
    return g.model([("data", [1, 3, size, size])], "mobilenetv20_output_flatten0_reshape0",
                   [1, classes], 11)


def torch_cnn_export(path: Path, size: int = 16, seed: int = 0, width: int | None = None
                     ) -> Path:
    """A small PyTorch CNN exported with BatchNorm kept (no constant folding, eval mode);
    ``width`` (default ``size``) makes the input non-square."""
    import warnings

    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(12), nn.LeakyReLU(0.1), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(12 * (size // 8) * ((width or size) // 8), 16), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(16, 10))
    for m in model.modules():  # non-trivial statistics, so BN matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, size, width or size),), str(path), dynamo=False,
                          do_constant_folding=False, input_names=["input"],
                          output_names=["logits"], opset_version=13)
    return path


def make_tiny_imagenet(root: Path, wnids: tuple[str, ...] = ("n01440764", "n01443537",
                                                             "n01484850"),
                       per_class: int = 6, n_val: int = 6) -> Path:
    """An ILSVRC2012 folder: train/<wnid>/*.JPEG (80x72, one colour dominant per class),
    val/*.JPEG + val.txt, synsets.txt. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(0)

    def image(path: Path, label: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 80, (72, 80, 3)) + 80 * np.eye(3, dtype=np.int64)[label % 3]
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=95)

    for k, wnid in enumerate(wnids):
        for i in range(per_class):
            image(root / "train" / wnid / f"{wnid}_{i}.JPEG", k)
    lines = []
    for i in range(n_val):
        image(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", i % len(wnids))
        lines.append(f"ILSVRC2012_val_{i:08d}.JPEG {i % len(wnids)}")
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    (root / "synsets.txt").write_text("".join(f"{w} class {w}\n" for w in wnids))
    return root


def run_onnxruntime(path: Path | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    data = path.SerializeToString() if isinstance(path, onnx.ModelProto) else str(path)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


# -- the builders themselves ---------------------------------------------------------------------
def test_resnet18v1_has_the_zoo_node_names_and_runs() -> None:
    model = resnet18v1(size=32, classes=10, widths=(8, 8, 16, 16))
    outputs = [n.output[0] for n in model.graph.node]
    assert outputs[:4] == ["resnetv15_conv0_fwd", "resnetv15_batchnorm0_fwd",
                           "resnetv15_relu0_fwd", "resnetv15_pool0_fwd"]
    assert outputs[-3:] == ["resnetv15_pool1_fwd", "flatten_170", "resnetv15_dense0_fwd"]
    assert "resnetv15_stage2_conv2_fwd" in outputs and "resnetv15_stage1_conv4_fwd" \
        not in outputs and "resnetv15_stage4_batchnorm4_fwd" in outputs
    assert sorted(set(RESNET18V1_RELUS) & set(outputs)) == sorted(RESNET18V1_RELUS)
    assert len(RESNET18V1_RELUS) == 17
    assert model.opset_import[0].version == 7
    y = run_onnxruntime(model, np.random.default_rng(0).normal(size=(1, 3, 32, 32)))
    assert y.shape == (1, 10) and np.isfinite(y).all()


def test_mobilenetv2_like_runs() -> None:
    y = run_onnxruntime(mobilenetv2_like(), np.random.default_rng(0).normal(size=(1, 3, 32, 32)))
    assert y.shape == (1, 10) and np.isfinite(y).all()


@pytest.mark.filterwarnings("ignore")
def test_torch_export_keeps_batchnorm(tmp_path: Path) -> None:
    model = onnx.load(str(torch_cnn_export(tmp_path / "cnn.onnx")))
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) == 2


def misc_ops_graph(seed: int = 2) -> onnx.ModelProto:
    """Every other translation on a 3x12x10 input (opset 13): SAME_UPPER stride-2 conv
    (asymmetric pads -> a Padding cell), Sigmoid folding, Concat, Sub/Mul/Max, a Relu that
    cannot fold (its input has two readers), MaxPool ceil_mode, AveragePool counting its
    padding, Pad, LeakyRelu, Flatten + MatMul + Add (-> Fc with bias), Dropout, Softmax."""
    g = GraphBuilder(seed)
    r = g.rng

    def w(name: str, *shape: int) -> str:
        return g.param(name, r.normal(0, 0.5, shape))

    g.node("Conv", ["data", w("a_w", 8, 3, 3, 3), w("a_b", 8)], "a", kernel_shape=[3, 3],
           strides=[2, 2], auto_pad="SAME_UPPER")
    g.node("Sigmoid", ["a"], "s")
    g.node("Conv", ["s", w("b_w", 4, 8, 1, 1)], "b", kernel_shape=[1, 1])
    g.node("Conv", ["s", w("c_w", 4, 8, 1, 1)], "c", kernel_shape=[1, 1])
    g.node("Concat", ["b", "c"], "cat", axis=1)
    g.node("Sub", ["b", "c"], "d")
    g.node("Mul", ["b", "d"], "e")
    g.node("Max", ["e", "c"], "f")
    g.node("Relu", ["f"], "r")
    g.node("Add", ["f", "r"], "g")
    g.node("Concat", ["cat", "g"], "cat2", axis=-3)
    g.node("Relu", ["cat2"], "rr")
    g.node("MaxPool", ["rr"], "mp", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    g.node("AveragePool", ["mp"], "ap", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
           count_include_pad=1)
    pads = g.param("pads", np.zeros(8))
    g.inits[-1] = numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64), pads)
    g.node("Pad", ["ap", pads], "pd")
    g.node("LeakyRelu", ["pd"], "lr", alpha=0.2)
    g.node("Flatten", ["lr"], "fl", axis=1)
    g.node("MatMul", ["fl", w("mm_w", 12 * 4 * 5, 7)], "mm")
    g.node("Add", ["mm", w("mm_b", 7)], "ad")
    ratio = g.param("ratio", np.array(0.3))
    g.node("Dropout", ["ad", ratio], "do")
    g.node("Softmax", ["do"], "sm", axis=-1)
    return g.model([("data", [1, 3, 12, 10])], "sm", [1, 7], 13)


MISC_CELLS = ["a_padding", "a", "b", "c", "cat", "d", "e", "f", "r", "g", "cat2",
              "mp_padding", "mp", "ap_padding", "ap", "pd", "lr", "mm", "do", "sm"]
MISC_ALIASES = {"s": "a", "rr": "cat2", "fl": "lr", "ad": "mm"}


def test_misc_ops_graph_runs() -> None:
    y = run_onnxruntime(misc_ops_graph(), np.random.default_rng(0).normal(size=(1, 3, 12, 10)))
    assert y.shape == (1, 7) and np.isclose(y.sum(), 1.0)


def googlenet_like(seed: int = 3) -> onnx.ModelProto:
    """GoogLeNet's (BVLC Caffe export, opset 9) ingredients: conv + ReLU, a max pool with
    Caffe's asymmetric (ceil) padding, LRN (no n2q cell: an onnx2torch float cell), an
    inception-style Concat of two branches, average pool, Dropout, Reshape, Gemm, Softmax."""
    g = GraphBuilder(seed)
    x = g.conv("data_0", "conv1/7x7_s2", 3, 8, 7, 2, 3, bias=True)
    x = g.node("Relu", [x], "conv1/7x7_s2_2")
    x = g.node("MaxPool", [x], "pool1/3x3_s2_1", kernel_shape=[3, 3], strides=[2, 2],
               pads=[0, 0, 1, 1])
    x = g.node("LRN", [x], "pool1/norm1_1", size=5, alpha=1e-4, beta=0.75, bias=1.0)
    a = g.node("Relu", [g.conv(x, "inception/1x1", 8, 4, 1, bias=True)], "inception/relu_1x1")
    b = g.node("Relu", [g.conv(x, "inception/3x3", 8, 6, 3, 1, 1, bias=True)],
               "inception/relu_3x3")
    x = g.node("Concat", [a, b], "inception/output_1", axis=1)
    x = g.node("AveragePool", [x], "pool5/7x7_s1_1", kernel_shape=[8, 8], strides=[1, 1])
    x = g.node("Dropout", [x], "pool5/drop_7x7_s1_1", ratio=0.4)
    shape = g.param("OC2_DUMMY_1", np.zeros(2))
    g.inits[-1] = numpy_helper.from_array(np.array([1, 10], np.int64), shape)
    x = g.node("Reshape", [x, shape], "OC2_DUMMY_0")
    w = g.param("loss3/classifier_w_0", g.rng.normal(0, 0.3, (7, 10)))
    b = g.param("loss3/classifier_b_0", g.rng.normal(0, 0.1, 7))
    x = g.node("Gemm", [x, w, b], "loss3/classifier_1", transB=1)
    g.node("Softmax", [x], "prob_1")
    return g.model([("data_0", [1, 3, 32, 32])], "prob_1", [1, 7], 9)


def test_googlenet_like_runs() -> None:
    y = run_onnxruntime(googlenet_like(), np.random.default_rng(0).normal(size=(1, 3, 32, 32)))
    assert y.shape == (1, 7) and np.isclose(y.sum(), 1.0)
