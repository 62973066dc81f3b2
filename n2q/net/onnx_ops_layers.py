"""ONNX translations of weighted layers and pools: Conv, Gemm/MatMul, BatchNormalization,
Max/Average/Global pools (registered in ``ONNX_OPS``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from n2q.errors import notice
from n2q.net.onnx import where
from n2q.net.onnx_graph import attributes, node_label
from n2q.net.onnx_translator import (
    Translator,
    attr_pair,
    onnx_op,
    spatial_attributes,
)


@onnx_op("Conv")
def conv(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    weight = t.const(node, 1, "weight")
    if weight.ndim != 4:
        raise t.fail(node, f"a {weight.ndim - 2}-D convolution: n2q imports 2-D ones only")
    bias = t.const(node, 2, "bias", optional=True)
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    stride, dilation, (pt, pl, pb, pr) = spatial_attributes(t, node, attrs, kernel)
    source = t.source(node.input[0])
    if (pt, pl) != (pb, pr):
        source = t.padding_cell(node, source, (pt, pl, pb, pr))
        pt = pl = 0
    keys: dict[str, Any] = {
        "KernelDims": t.dims(*kernel), "NbOutputs": weight.shape[0],
        "StrideDims": t.dims(*stride), "PaddingDims": t.dims(pt, pl),
        "DilationDims": t.dims(*dilation), "NoBias": int(bias is None)}
    groups = int(attrs.get("group", 1))
    if groups > 1:
        keys["Mapping.NbGroups"] = groups
    if t.options.transpose:
        weight = weight.transpose(0, 1, 3, 2)
    params = {"weight": weight}
    if bias is not None:
        params["bias"] = bias
    spec = t.emit(node, node.output[0], "Conv", [source], keys, params)
    spec.zero_bias = bias is None


@onnx_op("Gemm", "MatMul")
def fully_connected(t: Translator, node: onnx.NodeProto) -> None:
    """Gemm (y = alpha * x B' + beta * C) and MatMul by a constant -> Fc [O, C*H*W]."""
    attrs = attributes(node)
    if node.op_type == "Gemm" and int(attrs.get("transA", 0)):
        raise t.fail(node, "Gemm with transA=1 is not a fully-connected layer")
    matrix = t.const(node, 1, "weight")
    if matrix.ndim != 2:
        raise t.fail(node, f"a {matrix.ndim}-D weight: n2q's Fc takes a 2-D one")
    trans_b = node.op_type == "Gemm" and int(attrs.get("transB", 0))
    weight = matrix if trans_b else matrix.T          # [O, I]
    weight = weight * float(attrs.get("alpha", 1.0))
    source = t.source(node.input[0])
    c, h, w = t.source_chw(source)
    if weight.shape[1] != c * h * w:
        raise t.fail(node, f"weight takes {weight.shape[1]} inputs but its input "
                     f"'{source}' has {c}x{h}x{w} = {c * h * w} values")
    if t.options.transpose and h * w > 1:   # n2q flattens the transposed map: C, W, H order
        weight = weight.reshape(-1, c, h, w).transpose(0, 1, 3, 2).reshape(weight.shape[0], -1)
    params = {"weight": np.ascontiguousarray(weight)}
    bias = t.const(node, 2, "bias", optional=True) if node.op_type == "Gemm" else None
    if bias is not None:
        bias = np.broadcast_to(bias * float(attrs.get("beta", 1.0)), (weight.shape[0],))
        params["bias"] = bias
    spec = t.emit(node, node.output[0], "Fc", [source],
                  {"NbOutputs": weight.shape[0], "NoBias": int(bias is None)}, params)
    spec.zero_bias = bias is None


@onnx_op("BatchNormalization")
def batch_norm(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    names = ("weight", "bias", "running_mean", "running_var")
    params = {n: t.const(node, i + 1, n.replace("_", " ")) for i, n in enumerate(names)}
    c = t.chw(node.input[0])[0]
    # ONNX momentum weighs the running value; N2D2/torch's weighs the new batch
    momentum = 1.0 - float(attrs.get("momentum", 0.9))
    t.emit(node, node.output[0], "BatchNorm", [t.source(node.input[0])],
           {"NbOutputs": c, "Epsilon": float(attrs.get("epsilon", 1e-5)),
            "MovingAverageMomentum": round(momentum, 12)}, params)


# -- pooling -------------------------------------------------------------------------------------
@onnx_op("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
def pool(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    c, h, w = t.chw(node.input[0])
    pooling = "Max" if "Max" in node.op_type else "Average"
    if node.op_type.startswith("Global"):
        kernel, stride, pads = (h, w), (1, 1), (0, 0, 0, 0)
    else:
        kernel = attr_pair(attrs, "kernel_shape", 1)
        stride, dilation, pads = spatial_attributes(t, node, attrs, kernel)
        if dilation != (1, 1):
            raise t.fail(node, "dilated pooling is not supported")
        if int(attrs.get("ceil_mode", 0)):
            pads = _ceil_pads(pads, kernel, stride, (h, w))
    pt, pl, pb, pr = pads
    source = t.source(node.input[0])
    explicit = (pt, pl) != (pb, pr)
    if pooling == "Average" and any(pads) and int(attrs.get("count_include_pad", 0)):
        explicit = True  # zeros that count: an explicit Padding cell does exactly that
    elif pooling == "Average" and explicit:
        raise t.fail(node, "average pooling with asymmetric padding that does not count the "
                     "padded values cannot be imported")
    if explicit:
        if pooling == "Max" and not _non_negative(t, source):
            notice(f"{where(t.section)} node "
                   f"{node_label(node)}: asymmetric max-pool padding is imported as a zero "
                   "Padding cell (as N2D2 does): exact only for non-negative inputs")
        source = t.padding_cell(node, source, pads)
        pt = pl = 0
    t.emit(node, node.output[0], "Pool", [source],
           {"PoolDims": t.dims(*kernel), "StrideDims": t.dims(*stride),
            "PaddingDims": t.dims(pt, pl), "Pooling": pooling, "NbOutputs": c,
            "Mapping.ChannelsPerGroup": 1,
            # N2D2 (and n2q's default) count the padding; ONNX's default does not
            **({"CountIncludePadding": 0} if pooling == "Average" and pt + pl else {})})


def _ceil_pads(pads: tuple[int, int, int, int], kernel: tuple[int, int],
               stride: tuple[int, int], in_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """ceil_mode=1: extra end padding so that the floor formula gives the ceil size (the last
    window must still start inside the input or the begin padding, as ONNX/torch rule)."""
    begin, end = [pads[0], pads[1]], [pads[2], pads[3]]
    for i in range(2):
        span = in_hw[i] + begin[i] + end[i] - kernel[i]
        out = -(-span // stride[i]) + 1
        if (out - 1) * stride[i] >= in_hw[i] + begin[i]:
            out -= 1
        end[i] += max(0, (out - 1) * stride[i] - span)
    return begin[0], begin[1], end[0], end[1]


def _non_negative(t: Translator, source: str) -> bool:
    spec = t.by_name.get(source)
    return spec is not None and spec.activation.get("ActivationFunction") == "Rectifier"


# -- activations (folded into the previous cell) ---------------------------------------------
