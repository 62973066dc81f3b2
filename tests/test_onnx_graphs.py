"""Zoo-shaped ONNX test graphs built with onnx.helper (random weights), and their checks.

The model zoo files cannot be downloaded here, so these builders reproduce their structure and
exact node names: ResNet-18 v1 as MXNet Gluon exported it (opset 7, BatchNormalization
``spatial=0``, parameters also listed as graph inputs), a MobileNet-v2-like graph (opset 11,
depthwise convolutions, Clip(0, 6), inverted residuals), and PyTorch exports. The builders
are in tests/helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import (
    RESNET18V1_RELUS,
    googlenet_like,
    misc_ops_graph,
    mobilenetv2_like,
    resnet18v1,
    run_onnxruntime,
    torch_cnn_export,
)

# The 17 ReLU outputs the seed's recipe overrides with ReluQ_def.


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


def test_misc_ops_graph_runs() -> None:
    y = run_onnxruntime(misc_ops_graph(), np.random.default_rng(0).normal(size=(1, 3, 12, 10)))
    assert y.shape == (1, 7) and np.isclose(y.sum(), 1.0)


def test_googlenet_like_runs() -> None:
    y = run_onnxruntime(googlenet_like(), np.random.default_rng(0).normal(size=(1, 3, 32, 32)))
    assert y.shape == (1, 7) and np.isclose(y.sum(), 1.0)
