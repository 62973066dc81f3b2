"""n2q.Network.from_onnx against onnxruntime, and the quantizers of every registered method set
on the cells of such a network and changed between phases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import resnet18v1, run_onnxruntime

import n2q
from n2q.quant import ACT_QUANTIZERS, WEIGHT_QUANTIZERS

WIDTHS = (8, 8, 16, 16)


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zoo") / "resnet18v1.onnx"
    onnx.save(resnet18v1(size=32, classes=3, widths=WIDTHS), str(path))
    return path


def provider() -> n2q.Provider:
    """A provider read only for its size: the data base is never loaded here."""
    return n2q.Provider(n2q.Database("ILSVRC2012"), (32, 32, 3), batch_size=2)


def test_onnx_import_computes_what_onnxruntime_computes(zoo_file: Path) -> None:
    net = n2q.Network.from_onnx(zoo_file, provider())
    names = [cell.name for cell in net]
    assert names[0] == "resnetv15_conv0_fwd" and names[-1] == "softmax"
    assert net["resnetv15_dense0_fwd"].type == "Fc"
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    net.eval()
    with torch.no_grad():
        ours = net.output(torch.from_numpy(x)).numpy()   # the softmax's input: the logits
    reference = np.concatenate([run_onnxruntime(zoo_file, x[i:i + 1]) for i in range(2)])
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_onnx_defaults_are_the_ini_def_blocks(zoo_file: Path) -> None:
    n2q.seed(3)
    net = n2q.Network.from_onnx(zoo_file, provider(), init=False, defaults={
        "Conv": {"weights_filler": n2q.Filler("Constant", value=0.25), "no_bias": True}})
    conv = net["resnetv15_stage1_conv0_fwd"]
    assert torch.all(conv.weight == 0.25) and conv.bias is None
    assert "[onnx:Conv_def]" in net.to_ini() and "ONNX_init=0" in net.to_ini()
    with pytest.raises(n2q.UserError, match=r"Convv.*unknown cell type .did you mean Conv"):
        n2q.Network.from_onnx(zoo_file, provider(), defaults={"Convv": {}})


@pytest.mark.parametrize("method", sorted(WEIGHT_QUANTIZERS))
def test_every_weight_method_on_cells_between_phases(zoo_file: Path, method: str) -> None:
    net = n2q.Network.from_onnx(zoo_file, provider())
    for cell in net:
        if cell.type in ("Conv", "Fc"):
            n2q.set_quantizer(cell, weight=n2q.QWeight(method, range=15))
    first, inner = net["resnetv15_conv0_fwd"], net["resnetv15_stage1_conv0_fwd"]
    assert type(first.weight_quantizer) is WEIGHT_QUANTIZERS[method]
    for cell in net:                     # phase 2: 2 bits, the first layer kept at 4
        if cell.type in ("Conv", "Fc"):
            n2q.change_quantizer(cell, range=3)
    n2q.change_quantizer(first, range=15)
    assert inner.weight_quantizer.range == 3 and first.weight_quantizer.range == 15
    ini = zoo_file.parent / f"edited_{method}.ini"
    ini.write_text(net.to_ini())          # the changes as per-node sections, rebuilt alike
    again = n2q.Network.from_ini(ini)
    assert [(c.name, getattr(c.weight_quantizer, "range", None)) for c in again] == [
        (c.name, getattr(c.weight_quantizer, "range", None)) for c in net]
    x = torch.rand(2, 3, 32, 32)
    net.train()
    loss = net.output(x).logsumexp(1).sum()
    loss.backward()
    assert any(p.grad is not None for p in inner.parameters())
    net.eval()
    with torch.no_grad():
        on_grid(inner.weight_quantizer.integer_grid(inner.weight), inner.quantized_weight(), 4)
        on_grid(first.weight_quantizer.integer_grid(first.weight), first.quantized_weight(), 16)


@pytest.mark.parametrize("method", sorted(ACT_QUANTIZERS))
def test_every_act_method_replaces_the_relus(zoo_file: Path, method: str) -> None:
    net = n2q.Network.from_onnx(zoo_file, provider())
    relus = [cell for cell in net if n2q.activation_name(cell) == "Rectifier"]
    assert len(relus) == 17
    for cell in relus:
        n2q.set_activation(cell, "Linear")
        n2q.set_quantizer(cell, act=n2q.QAct(method, range=15))
    assert all(type(c.act_quantizer) is ACT_QUANTIZERS[method] for c in relus)
    net.eval()
    with torch.no_grad():
        out = net.forward_all(torch.rand(2, 3, 32, 32))
    for cell in relus:
        on_grid(cell.act_quantizer.integer_grid(), out[cell.name], 16)
    with pytest.raises(n2q.UserError, match="activation of resnetv15_batchnorm0_fwd"):
        net.to_ini()        # its INI form is the Relu node's section: refused, not wrong


def on_grid(grid, values: torch.Tensor, levels: int) -> None:
    """``values`` are integers of ``grid`` (n2q.quant.protocol) of at most ``levels``."""
    assert grid is not None and grid.levels <= levels
    q = grid.integers(values)
    torch.testing.assert_close(grid.dequantize(q), values.double(), rtol=1e-5, atol=1e-6)
    assert q.min() >= grid.qmin and q.max() <= grid.qmax
    assert torch.all((q - grid.qmin) % grid.stride == 0)
