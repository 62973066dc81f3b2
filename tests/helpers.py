"""Helpers the test modules share (one module: no test file imports another)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, numpy_helper
from onnx import helper as oh
from PIL import Image

from n2q.cli import main
from n2q.config import load_config
from n2q.net import build_network


# ------------------------------------------------------------------------------------------------
# tiny IDX data and a small Fc network, run through the command (test_train_*.py)
# ------------------------------------------------------------------------------------------------
def write_tiny_mnist(root: Path, n_train: int = 192, n_test: int = 48, size: int = 10) -> None:
    """An easy 10-class IDX data set: class c lights row c of a noisy size x size image."""
    rng = np.random.default_rng(0)
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 80, (n, size, size))
        images[np.arange(n), labels % size, :] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=True)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz=True)


NET = """
[database]
Type=MNIST_IDX_Database
Validation={validation}

[sp]
SizeX=10
SizeY=10
BatchSize=16

[fc1]
Input=sp
Type=Fc
NbOutputs=24
ActivationFunction=Rectifier
ConfigSection=common

[{middle_name}]
Input=fc1
{middle}

[fc2]
Input={middle_name}
Type=Fc
NbOutputs=10
ActivationFunction=Linear
ConfigSection=common

[softmax]
Input=fc2
Type=Softmax
NbOutputs=10
WithLoss={with_loss}

[softmax.Target]

[common]
WeightsFiller=HeFiller
Solvers.LearningRate={lr}
Solvers.Momentum=0.9
Solvers.Decay=0.0005
Solvers.LearningRatePolicy=StepDecay
Solvers.LearningRateStepSize=[sp]_EpochSize
Solvers.LearningRateDecay=0.9
Solvers.Clamping={clamping}
{common}
"""
DROPOUT = ("fc1.drop", "Type=Dropout\nNbOutputs=24")  # the middle layer: (name, keys)


def make_tiny_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with tiny MNIST-like data under $N2Q_DATA; returns it."""
    write_tiny_mnist(tmp_path / "data")
    monkeypatch.setenv("N2Q_DATA", str(tmp_path / "data"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write_net(folder: Path, validation: float = 0.25, with_loss: int = 1, lr: float = 0.05,
              name: str = "tiny.ini", clamping: str = "-1.0:1.0",
              middle: tuple[str, str] = DROPOUT, common: str = "") -> str:
    """sp -> fc1 (24, ReLU) -> middle layer -> fc2 (10) -> softmax; ``common``: more keys for
    the [common] section of fc1 and fc2."""
    (folder / name).write_text(NET.format(validation=validation, with_loss=with_loss, lr=lr,
                                          clamping=clamping, middle_name=middle[0],
                                          middle=middle[1], common=common))
    return name


def n2q(*args: str) -> int:
    return main([str(a) for a in args])


def read_weights(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.syntxt"))}


# ------------------------------------------------------------------------------------------------
# data bases in their on-disk formats: IDX, CIFAR binary records, image folders
# ------------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path

def write_mnist(folder: Path, n_train: int = 10, n_test: int = 4, gz: bool = False,
                h: int = 3, w: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Images whose first pixel is their index (so a stimulus can be recognized)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = n_train + n_test
    images = np.zeros((n, h, w), np.uint8)
    images[:, 0, 0] = np.arange(n)
    images[:, -1, -1] = 200
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", images[:n_train], gz)
    write_idx(folder / "train-labels-idx1-ubyte", labels[:n_train], gz)
    write_idx(folder / "t10k-images-idx3-ubyte", images[n_train:], gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", labels[n_train:], gz)
    return images, labels

def ini(tmp_path: Path, text: str, name: str = "net.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path

def cifar_records(labels: list[tuple[int, ...]], seed: int = 0) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)  # R, G, B planes
    data = b"".join(bytes(lab) + img.tobytes() for lab, img in zip(labels, images, strict=True))
    return data, images

def write_cifar10(folder: Path, per_batch: int = 2, n_test: int = 3) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    all_images = []
    for b in range(1, 6):
        data, images = cifar_records([((b + i) % 10,) for i in range(per_batch)], seed=b)
        (folder / f"data_batch_{b}.bin").write_bytes(data)
        all_images.append(images)
    data, images = cifar_records([(i % 10,) for i in range(n_test)], seed=9)
    (folder / "test_batch.bin").write_bytes(data)
    all_images.append(images)
    return np.concatenate(all_images)

def write_image(path: Path, value: int, size=(6, 4), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = (value, (value + 1) % 256, (value + 2) % 256) if mode == "RGB" else value
    Image.new(mode, size, colour).save(path)

def write_ilsvrc(root: Path, per_class: int = 4) -> None:
    wnids = ["n01", "n02", "n03"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "synsets.txt").write_text("".join(f"{w} class {w}\n" for w in wnids))
    for k, w in enumerate(wnids):
        for i in range(per_class):
            write_image(root / "train" / w / f"{w}_{i}.JPEG", 10 * k + i)
    lines = []
    for i in range(3):
        write_image(root / "val" / f"val_{i}.JPEG", 100 + i)
        lines.append(f"val_{i}.JPEG {2 - i}")
    (root / "val.txt").write_text("\n".join(lines) + "\n")

def write_dir(root: Path, counts: dict[str, int], ext: str = "png") -> None:
    for label, n in counts.items():
        for i in range(n):
            write_image(root / label / f"{i}.{ext}", i, mode="L")


# ------------------------------------------------------------------------------------------------
# fusion: random 8-bit stimuli, and a short SGD run that moves the BatchNorm statistics
# and the SAT alphas before a network is fused
# ------------------------------------------------------------------------------------------------
def random_stimuli(n: int, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """n random [0, 1] images [n, *shape] on the 1/255 grid (the fused input is round(255 x))."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g).float() / 255

def train_briefly(
    net,
    shape: tuple[int, ...],
    target: str,
    classes: int,
    *,
    steps: int,
    batch: int,
    lr: float,
    first_seed: int,
    seed: int = 0,
) -> None:
    """`steps` SGD steps (momentum 0.9) of cross-entropy on `target` against random labels in
    [0, classes); batch i is random_stimuli(batch, first_seed + i). Leaves `net` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    for step in range(steps):
        x = random_stimuli(batch, first_seed + step, shape)
        label = torch.randint(0, classes, (batch,), generator=g)
        loss = F.cross_entropy(net(x)[target].flatten(1), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()


# ------------------------------------------------------------------------------------------------
# zoo-shaped ONNX graphs built with onnx.helper (random weights): ResNet-18 v1 as MXNet
# exported it (opset 7, its node names), MobileNet-v2-like, GoogLeNet-like, PyTorch exports
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# ONNX import: an INI around a graph, n2q's output against onnxruntime's
# ------------------------------------------------------------------------------------------------
HEADER = """
[sp]
SizeX={w}
SizeY={h}
NbChannels=3
"""

def write_ini(tmp_path: Path, model: onnx.ModelProto | None, body: str, h: int = 32,
              w: int | None = None, onnx_keys: str = "") -> Path:
    if model is not None:
        onnx.save(model, str(tmp_path / "model.onnx"))
    text = HEADER.format(h=h, w=w or h) + body.replace("{ONNX}", "[onnx]\nInput=sp\nType=ONNX"
                                                      f"\nFile=model.onnx\n{onnx_keys}")
    path = tmp_path / "net.ini"
    path.write_text(text)
    return path

def build(ini: Path, shape: tuple[int, int, int], quantize: bool = False):
    return build_network(load_config(ini), shape, quantize=quantize).eval()

def n2q_output(net, x: np.ndarray, cell: str | None = None) -> np.ndarray:
    with torch.no_grad():
        outs = net.forward_all(torch.from_numpy(x.astype(np.float32)))
    name = cell or net.targets[0].cell
    return outs[name].reshape(x.shape[0], -1).numpy()

def assert_matches_onnxruntime(net, model_or_path, x: np.ndarray, cell: str | None = None
                               ) -> float:
    ref = run_onnxruntime(model_or_path, x)
    got = n2q_output(net, x, cell)
    diff = float(np.abs(got - ref.reshape(got.shape)).max())
    scale = max(1.0, float(np.abs(ref).max()))
    assert diff <= 1e-4 * scale, f"max abs diff {diff} (output scale {scale})"
    return diff

def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# seed 004's SAT recipe for the imported ResNet-18 v1
# ------------------------------------------------------------------------------------------------
WIDTHS = (8, 8, 16, 16)

SAT_RECIPE = """
DefaultModel=Frame_CUDA
[database]
Type=ILSVRC2012_Database
RandomPartitioning=1
Learn=1.0
[sp]
SizeX=64
SizeY=64
NbChannels=3
BatchSize=4
[sp.Transformation-1]
Type=ColorSpaceTransformation
ColorSpace=RGB
[sp.Transformation-2]
Type=RangeAffineTransformation
FirstOperator=Divides
FirstValue=255.0
[sp.Transformation-3]
Type=RandomResizeCropTransformation
Width=64
Height=64
ScaleMin=0.2
ScaleMax=1.0
RatioMin=0.75
RatioMax=1.33
ApplyTo=LearnOnly
[sp.Transformation-4]
Type=RescaleTransformation
Width=73
Height=73
KeepAspectRatio=1
ResizeToFit=0
ApplyTo=NoLearn
[sp.Transformation-5]
Type=PadCropTransformation
Width=[sp.Transformation-4]Width
Height=[sp.Transformation-4]Height
ApplyTo=NoLearn
[sp.Transformation-6]
Type=SliceExtractionTransformation
Width=[sp]SizeX
Height=[sp]SizeY
OffsetX=4
OffsetY=4
ApplyTo=NoLearn
[sp.OnTheFlyTransformation-7]
Type=FlipTransformation
ApplyTo=LearnOnly
RandomHorizontalFlip=1

[onnx:Conv_def]
QWeight=SAT
QWeight.ApplyScaling=0
QWeight.ApplyQuantization={QUANT}
{RANGE}
WeightsFiller=XavierFiller
WeightsFiller.VarianceNorm=FanOut
WeightsFiller.Scaling=1.0
ConfigSection=conv.config
[conv.config]
NoBias=1
Solvers.LearningRatePolicy=CosineDecay
Solvers.LearningRate=0.05
Solvers.Momentum=0.9
Solvers.Decay=0.00004
Solvers.MaxIterations=192175050
Solvers.IterationSize=2
[onnx:Fc_def]
QWeight=SAT
QWeight.ApplyScaling=1
QWeight.ApplyQuantization={QUANT}
{RANGE}
WeightsFiller=XavierFiller
WeightsFiller.VarianceNorm=FanOut
WeightsFiller.Scaling=1.0
ConfigSection=fc.config
[fc.config]
NoBias=0
Solvers.LearningRatePolicy=CosineDecay
Solvers.LearningRate=0.05
Solvers.Momentum=0.9
Solvers.Decay=0.00004
Solvers.MaxIterations=192175050
Solvers.IterationSize=2
[onnx:BatchNorm_def]
ConfigSection=bn_train.config
[bn_train.config]
Solvers.LearningRatePolicy=CosineDecay
Solvers.LearningRate=0.05
Solvers.Momentum=0.9
Solvers.Decay=0.00004
Solvers.MaxIterations=192175050
Solvers.IterationSize=2
{ACTIVATIONS}
[onnx]
Input=sp
Type=ONNX
File=resnet18v1.onnx
ONNX_init=0
[soft1]
Input=resnetv15_dense0_fwd
Type=Softmax
NbOutputs=3
WithLoss=1
[soft1.Target]
"""

RELUQ = """[ReluQ_def]
ActivationFunction=Linear
QAct=SAT
QAct.Range=15
QActSolver=SGD
QActSolver.LearningRatePolicy=CosineDecay
QActSolver.LearningRate=0.05
QActSolver.Momentum=0.9
QActSolver.Decay=0.00004
QActSolver.MaxIterations=192175050
QActSolver.IterationSize=2
""" + "".join(f"[{r}]ReluQ_def\n" for r in RESNET18V1_RELUS) + """
[resnetv15_conv0_fwd]onnx:Conv_def
QWeight.Range=255
[resnetv15_dense0_fwd]onnx:Fc_def
QWeight.Range=255
"""

def sat_ini(folder: Path, quantize: bool) -> Path:
    text = SAT_RECIPE.replace("{QUANT}", str(int(quantize)))
    text = text.replace("{RANGE}", "QWeight.Range=15" if quantize else "")
    text = text.replace("{ACTIVATIONS}", RELUQ if quantize else "")
    path = folder / f"resnet18-v1{'-q' if quantize else ''}.ini"
    path.write_text(text)
    onnx.save(resnet18v1(size=64, classes=3, widths=WIDTHS), str(folder / "resnet18v1.onnx"))
    return path
