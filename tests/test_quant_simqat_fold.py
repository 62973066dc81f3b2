"""SimQAT's BatchNorm folding (QWeight.FoldBN=OneConv|TwoConv, FreezeBN) against a plain
Conv + BatchNorm computed separately with torch's own functions (spec/quant.md "SimQAT")."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torch.nn.functional as F

from n2q.config import load_config
from n2q.errors import UserError
from n2q.net import build_network
from n2q.quant.protocol import quantizers
from n2q.quant.simqat import fake_quantize, nudge

HEAD = "[sp]\nSizeX=6\nSizeY=6\n[bn1.Target]\n"


def _net(tmp_path, fold: str, extra: str = "", bn_extra: str = ""):
    body = f"""
        [conv1]
        Input=sp
        Type=Conv
        KernelDims=3 3
        NbOutputs=3
        NoBias=1
        ActivationFunction=Linear
        QWeight=SimQAT
        QWeight.FoldBN={fold}
        {extra}
        [bn1]
        Input=conv1
        Type=BatchNorm
        ActivationFunction=Linear
        {bn_extra}
        """
    ini = tmp_path / "net.ini"
    ini.write_text(HEAD + textwrap.dedent(body))
    net = build_network(load_config(ini), (2, 6, 6))     # binds the quantizers
    torch.manual_seed(0)
    bn = net.cells["bn1"]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.7, 0.4]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.05]))
        bn.running_var.copy_(torch.tensor([0.5, 2.0, 1.2]))
    return net


def _stimuli():
    return torch.randn(8, 2, 6, 6, generator=torch.Generator().manual_seed(3))


def _plain(net, x, training, w=None):
    """Conv then BatchNorm with torch's functions, on copies of the running statistics."""
    conv, bn = net.cells["conv1"], net.cells["bn1"]
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    z = F.conv2d(x, conv.weight if w is None else w)
    y = F.batch_norm(z, mean, var, bn.weight, bn.bias, training, bn.momentum, bn.eps)
    return y, mean, var


def _q8_per_channel(w):
    """Symmetric 8-bit per output channel with the module's quantizer functions (checked on
    hand-worked values in test_quant_simqat.py): here only the folding is under test. The
    channel's -M lands on a rounding tie of the spec's grid (v = 0.5), so a second
    implementation of the rounding would differ there by float noise."""
    m = w.abs().amax(dim=(1, 2, 3))
    scale, zp, lo, hi = nudge(-m, m, 0, 255, True)
    return fake_quantize(w, *(t.float()[:, None, None, None] for t in (scale, lo, hi, -zp)))


def _factor(bn):
    return bn.weight / torch.sqrt(bn.running_var + bn.eps)


@pytest.mark.parametrize("fold", ["OneConv", "TwoConv"])
def test_without_quantization_folding_equals_conv_then_batchnorm(tmp_path, fold):
    # 2^24 - 1 steps: the grid is finer than float32's own rounding of these weights
    net = _net(tmp_path, fold, "QWeight.Range=16777215")
    x = _stimuli()
    net.train()
    expected, mean, var = _plain(net, x, True)
    y = net(x)["bn1"]
    torch.testing.assert_close(y, expected, atol=2e-5, rtol=1e-5)
    bn = net.cells["bn1"]
    torch.testing.assert_close(bn.running_mean, mean)        # statistics updated once
    torch.testing.assert_close(bn.running_var, var)
    # inference on a fresh network: a trained one quantizes with the range tracked before
    # its statistics moved (the spec's stored min/max)
    net = _net(tmp_path, fold, "QWeight.Range=16777215").eval()
    expected, _, _ = _plain(net, x, False)
    torch.testing.assert_close(net(x)["bn1"], expected, atol=2e-5, rtol=1e-5)


def test_two_conv_training_and_inference_with_quantization(tmp_path):
    net = _net(tmp_path, "TwoConv")
    conv, bn = net.cells["conv1"], net.cells["bn1"]
    x = _stimuli()
    with torch.no_grad():
        sigma_run = torch.sqrt(bn.running_var + bn.eps)
        wq = _q8_per_channel(conv.weight * _factor(bn)[:, None, None, None])
        z = F.conv2d(x, conv.weight)
        mu_b, var_b = z.mean((0, 2, 3)), z.var((0, 2, 3), unbiased=False)
        sigma_b = torch.sqrt(var_b + bn.eps)
        expected = (F.conv2d(x, wq) * (sigma_run / sigma_b)[:, None, None]
                    + (bn.bias - bn.weight * mu_b / sigma_b)[:, None, None])
    net.train()
    y = net(x)["bn1"]
    torch.testing.assert_close(y, expected, atol=2e-5, rtol=1e-5)
    y.square().sum().backward()           # gamma and beta learn through the folded conv
    assert bn.weight.grad.abs().min() > 0 and bn.bias.grad.abs().min() > 0
    net = _net(tmp_path, "TwoConv").eval()        # untracked: the folded weight's own range
    conv, bn = net.cells["conv1"], net.cells["bn1"]
    with torch.no_grad():
        sigma_run = torch.sqrt(bn.running_var + bn.eps)
        wq = _q8_per_channel(conv.weight * _factor(bn)[:, None, None, None])
        expected = F.conv2d(x, wq) + (bn.bias - bn.weight * bn.running_mean / sigma_run
                                      )[:, None, None]
        torch.testing.assert_close(net(x)["bn1"], expected, atol=2e-5, rtol=1e-5)
        # the deployed weight is w * gamma / sigma, quantized
        torch.testing.assert_close(conv.quantized_weight(), wq)


def test_one_conv_training_and_inference_with_quantization(tmp_path):
    net = _net(tmp_path, "OneConv")
    conv, bn = net.cells["conv1"], net.cells["bn1"]
    x = _stimuli()
    for training in (True, False):
        net = _net(tmp_path, "OneConv").train(training)
        conv, bn = net.cells["conv1"], net.cells["bn1"]
        with torch.no_grad():
            f = _factor(bn)
            wq = _q8_per_channel(conv.weight * f[:, None, None, None])
            expected, _, _ = _plain(net, x, training)
            z = F.conv2d(x, wq) / f[:, None, None]
            expected = F.batch_norm(z, bn.running_mean.clone(), bn.running_var.clone(),
                                    bn.weight, bn.bias, training, bn.momentum, bn.eps)
            torch.testing.assert_close(net(x)["bn1"], expected, atol=2e-5, rtol=1e-5)


def test_freeze_bn_uses_running_statistics_and_stops_updating_them(tmp_path):
    net = _net(tmp_path, "TwoConv", "QWeight.QuantDelay=1000\nQWeight.FreezeBN=2")
    bn = net.cells["bn1"]
    x = _stimuli()
    net.train()
    for _, q in quantizers(net):
        q.after_step(2)
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    expected, _, _ = _plain(net, x, False)
    torch.testing.assert_close(net(x)["bn1"], expected, atol=2e-5, rtol=1e-5)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    for _, q in quantizers(net):
        q.after_step(1)                  # before FreezeBN: batch statistics again
    expected, _, _ = _plain(net, x, True)
    torch.testing.assert_close(net(x)["bn1"], expected, atol=2e-5, rtol=1e-5)


def test_no_folding_by_default_keeps_a_float_batchnorm(tmp_path):
    net = _net(tmp_path, "0")
    conv = net.cells["conv1"]
    x = _stimuli()
    net.eval()
    with torch.no_grad():
        expected, _, _ = _plain(net, x, False, _q8_per_channel(conv.weight))
        torch.testing.assert_close(net(x)["bn1"], expected, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("extra,bn_extra,match", [
    ("", "[pool]\nInput=conv1\nType=Pool\nPoolDims=2 2\nPooling=Max\nMapping.Size=1",
     "only consumer of conv1, found bn1, pool"),
])
def test_fold_without_a_single_batchnorm_consumer_is_located(tmp_path, extra, bn_extra, match):
    with pytest.raises(UserError, match=rf"net.ini:\d+: \[conv1\] QWeight.FoldBN: .*{match}"):
        _net(tmp_path, "TwoConv", extra, textwrap.dedent(bn_extra).replace("\n", "\n        "))


def test_fold_on_a_conv_with_an_activation_is_refused(tmp_path):
    ini = tmp_path / "net.ini"
    ini.write_text(HEAD + "[conv1]\nInput=sp\nType=Conv\nKernelDims=3 3\nNbOutputs=3\n"
                   "ActivationFunction=Rectifier\nQWeight=SimQAT\nQWeight.FoldBN=OneConv\n"
                   "[bn1]\nInput=conv1\nType=BatchNorm\n")
    with pytest.raises(UserError, match=r"net.ini:12: \[conv1\] QWeight.FoldBN: .*linear Conv"):
        build_network(load_config(ini), (2, 6, 6))      # binds the quantizers
