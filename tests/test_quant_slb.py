"""SLB (spec/quant.md "SLB"): candidates, relaxed and one-hot forwards, gradients, the
temperature schedule, initialization, settings, solver groups, weights folders.

Expected values are worked out by hand from the spec's formulas, e.g. for R = 1, logits
[0, ln 3], T = 1: P = [1/4, 3/4], W = -1/4 + 3/4 = 1/2, dW/dA_i = T * P_i * (v_i - W)
= [1/4 * -3/2, 3/4 * 1/2] = [-3/8, 3/8].
"""

from __future__ import annotations

import copy as copy_module
import math
from pathlib import Path

import pytest
import torch

from n2q.config import load_config
from n2q.errors import UserError
from n2q.io.syntxt import read_values
from n2q.io.weights import load_weights, save_weights
from n2q.net import build_network
from n2q.quant.protocol import RunPlan
from n2q.quant.slb import SLBSettings, SLBWeight, candidates, he_normal_std
from n2q.train.solvers import make_optimizer

LN3 = math.log(3.0)


def _slb(logits: list, range_: int, t: float = 1.0) -> SLBWeight:
    """A quantizer of one or more weights with the given logits [n, R+1] and temperature."""
    rows = torch.tensor(logits, dtype=torch.float32)
    q = SLBWeight(SLBSettings(range=range_), weight_shape=(rows.shape[0],))
    with torch.no_grad():
        q.logits.copy_(rows)
        q.temperature.fill_(t)
    return q


# -- candidates and forwards --------------------------------------------------------------------
def test_candidate_values():
    assert candidates(1).tolist() == [-1.0, 1.0]
    torch.testing.assert_close(candidates(3), torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))
    torch.testing.assert_close(candidates(15), (2 * torch.arange(16.0) - 15) / 15)


@pytest.mark.parametrize("logits,range_,t,expected", [
    ([[0.0, LN3]], 1, 1.0, [0.5]),                      # P = [1/4, 3/4]
    ([[0.0, LN3]], 1, 2.0, [0.8]),                      # P = [1/10, 9/10]
    ([[0.0, 0.0, math.log(2.0), 0.0]], 3, 1.0, [1 / 15]),  # e = [1,1,2,1]: (-1-1/3+2/3+1)/5
    ([[5.0, 5.0]], 1, 3.0, [0.0]),                      # ties: the mean of the candidates
    ([[0.0, LN3], [LN3, 0.0]], 1, 1.0, [0.5, -0.5]),
])
def test_softmax_with_temperature(logits, range_, t, expected):
    q = _slb(logits, range_, t)
    w = q.fake_quantize(torch.zeros(len(logits)))
    torch.testing.assert_close(w, torch.tensor(expected), atol=1e-6, rtol=0)


def test_large_temperature_does_not_overflow():
    q = _slb([[50.0, 49.0, 0.0, -50.0]], 3, t=1.2 ** 40)   # A*T ~ 7e4
    assert q.fake_quantize(torch.zeros(1)).item() == -1.0


def test_one_hot_in_inference_and_after_the_end_flag():
    q = _slb([[0.1, 0.5, 0.2, 0.3], [0.0, 0.0, 0.0, 0.9]], 3, t=1.0)
    q.eval()
    assert q.fake_quantize(torch.zeros(2)).tolist() == pytest.approx([-1 / 3, 1.0])
    q.train()
    assert q.fake_quantize(torch.zeros(2))[0].item() != pytest.approx(-1 / 3)  # relaxed
    q.end.fill_(True)
    assert q.fake_quantize(torch.zeros(2)).tolist() == pytest.approx([-1 / 3, 1.0])


@pytest.mark.parametrize("t,expected", [(1.0, [-0.375, 0.375]), (2.0, [-0.36, 0.36])])
def test_gradient_of_the_logits(t, expected):
    # T=2: P = [.1, .9], W = .8: 2 * [.1 * -1.8, .9 * .2]
    q = _slb([[0.0, LN3]], 1, t)
    q.fake_quantize(torch.zeros(1)).sum().backward()
    torch.testing.assert_close(q.logits.grad, torch.tensor([expected]), atol=1e-6, rtol=0)


def test_gradient_matches_autograd_through_softmax():
    torch.manual_seed(0)
    q = SLBWeight(SLBSettings(range=15), weight_shape=(300, 7))   # several chunks of rows
    q.temperature.fill_(1.7)
    g = torch.randn(300, 7)
    (q.fake_quantize(torch.zeros(300, 7)) * g).sum().backward()
    a = q.logits.detach().clone().requires_grad_(True)
    w = (torch.softmax(a * 1.7, dim=-1) * candidates(15)).sum(-1)
    (w * g).sum().backward()
    torch.testing.assert_close(q.logits.grad, a.grad, atol=1e-6, rtol=1e-5)


def test_gradient_memory_is_reused_only_once_released():
    torch.manual_seed(2)
    q = SLBWeight(SLBSettings(range=3), weight_shape=(70000,))   # two chunks of rows
    g1, g2 = torch.randn(70000), torch.randn(70000)
    a = q.logits.detach().clone().requires_grad_(True)
    v = candidates(3)

    def reference(g: torch.Tensor) -> torch.Tensor:
        a.grad = None
        ((torch.softmax(a, dim=-1) * v).sum(-1) * g).sum().backward()
        return a.grad.clone()

    (q.fake_quantize(torch.zeros(70000)) * g1).sum().backward()
    first = q.logits.grad
    (q.fake_quantize(torch.zeros(70000)) * g2).sum().backward()   # accumulates (IterationSize)
    torch.testing.assert_close(q.logits.grad, reference(g1) + reference(g2), atol=1e-6,
                               rtol=1e-5)
    assert q.logits.grad is first
    q.logits.grad = None                                          # the solver's update
    (q.fake_quantize(torch.zeros(70000)) * g2).sum().backward()
    torch.testing.assert_close(q.logits.grad, reference(g2), atol=1e-6, rtol=1e-5)
    assert q.logits.grad.data_ptr() == first.data_ptr()           # the same memory again
    copy = copy_module.deepcopy(q)
    assert copy._grad_memory is None and torch.equal(copy.logits, q.logits)


def test_gradients_reach_the_logits_before_t_end_and_not_after():
    q = SLBWeight(SLBSettings(range=3), weight_shape=(4, 2, 3, 3))
    q.plan(RunPlan(total_epochs=10))            # t_start = 2, t_end = 6
    q.start_epoch(5)
    q.fake_quantize(torch.zeros(4, 2, 3, 3)).pow(2).sum().backward()
    assert q.logits.grad is not None and q.logits.grad.abs().sum() > 0
    q.logits.grad = None
    q.start_epoch(6)
    w = q.fake_quantize(torch.zeros(4, 2, 3, 3))
    assert not w.requires_grad and q.logits.grad is None
    assert set(w.unique().tolist()) <= set(candidates(3).tolist())


# -- schedule -----------------------------------------------------------------------------------
@pytest.mark.parametrize("E,start,end,epoch,T,flag", [
    (10, 0.2, 0.6, 1, 1.0, False),          # t_start = 2, t_end = 6
    (10, 0.2, 0.6, 2, 1.0, False),
    (10, 0.2, 0.6, 3, 1.2, False),
    (10, 0.2, 0.6, 5, 1.2 ** 3, False),
    (10, 0.2, 0.6, 6, 1.2 ** 4, True),
    (10, 0.2, 0.6, 9, 1.2 ** 4, True),      # held at its t_end value
    (100, 0.2, 0.6, 20, 1.0, False),
    (100, 0.2, 0.6, 21, 1.2, False),
    (100, 0.2, 0.6, 60, 1.2 ** 40, True),
    (3, 0.2, 0.6, 1, 1.2, True),            # t_start = int(0.6) = 0, t_end = int(1.8) = 1
    (7, 0.5, 0.5, 3, 1.0, True),            # t_start = t_end = 3
    (7, 0.5, 0.5, 4, 1.0, True),
    (5, 0.0, 1.0, 5, 1.2 ** 5, True),
    (5, 0.0, 1.0, 4, 1.2 ** 4, False),
])
def test_temperature_schedule(E, start, end, epoch, T, flag):
    s = SLBSettings(range=1, t_start_time=start, t_end_time=end)
    t, due = s.temperature(E, epoch)
    assert t == pytest.approx(T, rel=1e-12) and due is flag
    q = SLBWeight(s, weight_shape=(2,))
    q.plan(RunPlan(total_epochs=E, start_epoch=epoch - 1))   # a run resumed before `epoch`
    q.start_epoch(epoch)
    assert q.temperature.item() == pytest.approx(T, rel=1e-6) and bool(q.end) is flag


def test_end_flag_is_never_cleared_and_resumes_from_the_state_dict():
    q = SLBWeight(SLBSettings(range=1, t_start_val=2.0, t_factor=1.5), weight_shape=(3,))
    q.plan(RunPlan(total_epochs=10))
    q.start_epoch(6)
    state = q.state_dict()
    fresh = SLBWeight(SLBSettings(range=1, t_start_val=2.0, t_factor=1.5), weight_shape=(3,))
    fresh.load_state_dict(state)
    assert fresh.end.item() and fresh.temperature.item() == pytest.approx(2.0 * 1.5 ** 4)
    assert torch.equal(fresh.logits, q.logits)
    fresh.plan(RunPlan(total_epochs=20, start_epoch=6))  # more epochs: t_end = 12 now
    fresh.start_epoch(7)
    assert fresh.end.item()


def test_console_shows_the_temperature_and_the_one_hot_switch(capsys):
    q = SLBWeight(SLBSettings(range=1), weight_shape=(3,))
    q.plan(RunPlan(total_epochs=5))                  # t_start = 1, t_end = 3
    for epoch in (1, 2, 3, 4):
        q.start_epoch(epoch)
    err = capsys.readouterr().err.splitlines()
    assert "SLB epoch 1/5 (1 cell): temperature 1" in err[0]
    assert "temperature 1.2" in err[1]
    assert "one-hot from now on" in err[2] and len(err) == 3


def test_bn_calibration_after_t_start_only():
    q = SLBWeight(SLBSettings(range=1, bn_calibration=True), weight_shape=(3,))
    q.plan(RunPlan(total_epochs=10))                 # t_start = 2
    assert [q.wants_calibration(e) for e in (1, 2, 3, 10)] == [False, False, True, True]
    off = SLBWeight(SLBSettings(range=1), weight_shape=(3,))
    off.plan(RunPlan(total_epochs=10))
    assert not off.wants_calibration(5)


# -- initialization and integer grid -----------------------------------------------------------
@pytest.mark.parametrize("shape,range_,fan_out", [
    ((64, 32, 3, 3), 15, 64 * 3 * 3 * 16),    # Conv: O * kH * kW * (R+1)
    ((512, 400), 3, 512 * 4),                 # Fc: O * (R+1)
])
def test_he_normal_initialization(shape, range_, fan_out):
    torch.manual_seed(0)
    q = SLBWeight(SLBSettings(range=range_), weight_shape=shape)
    assert q.logits.shape == (*shape, range_ + 1)
    std = math.sqrt(2 / fan_out)
    assert he_normal_std(tuple(q.logits.shape)) == pytest.approx(std)
    # n >= 8e5 samples: the sample std is within 0.2% of std with overwhelming probability
    assert q.logits.std().item() == pytest.approx(std, rel=0.01)
    assert abs(q.logits.mean().item()) < 0.01 * std


@pytest.mark.parametrize("range_", [1, 3, 15])
def test_integer_grid_holds_the_one_hot_weights(range_):
    torch.manual_seed(1)
    q = SLBWeight(SLBSettings(range=range_), weight_shape=(8, 3, 3, 3)).eval()
    w = q.fake_quantize(torch.zeros(8, 3, 3, 3))
    grid = q.integer_grid()
    n = grid.integers(w)
    assert (grid.qmin, grid.qmax, grid.stride) == (-range_, range_, 2)
    assert ((n - range_) % 2 == 0).all() and n.abs().max() <= range_
    assert torch.equal(grid.dequantize(n).float(), w)


# -- INI: settings, bad values, solver groups, summary, weights folders ---------------------------
NET = """
[sp]
SizeX=6
SizeY=6
NbChannels=2
BatchSize=4

[conv1]
Input=sp
Type=Conv
KernelWidth=3
KernelHeight=3
NbOutputs=4
NoBias=1
ActivationFunction=Linear
QWeight=SLB
QWeight.Range=3
{conv_keys}
WeightsSolver.LearningRate=0.1
WeightsSolver.Decay=0.0001
WeightsSolver.Momentum=0.9

[bn1]
Input=conv1
Type=BatchNorm
NbOutputs=4
ActivationFunction=Rectifier

[fc]
Input=bn1
Type=Fc
NbOutputs=3
QWeight=SLB
QWeight.Range=1
{fc_keys}

[softmax]
Input=fc
Type=Softmax
NbOutputs=3
WithLoss=1

[softmax.Target]
"""


def _net(tmp_path: Path, conv_keys: str = "", fc_keys: str = ""):
    ini = tmp_path / "net.ini"
    ini.write_text(NET.format(conv_keys=conv_keys, fc_keys=fc_keys))
    return build_network(load_config(ini), input_shape=(2, 6, 6))


def test_reads_every_key(tmp_path):
    net = _net(tmp_path, "QWeight.TStartVal=2.0\nQWeight.TStartTime=0.1\nQWeight.TEndTime=0.9\n"
               "QWeight.TFactor=1.1\nQWeight.BNCalibration=1")
    q = net.cells["conv1"].weight_quantizer
    assert q.settings == SLBSettings(range=3, t_start_val=2.0, t_start_time=0.1,
                                     t_end_time=0.9, t_factor=1.1, bn_calibration=True)
    assert q.logits.shape == (4, 2, 3, 3, 4) and q.temperature.item() == 2.0
    assert net.cells["fc"].weight_quantizer.settings == SLBSettings(range=1)


@pytest.mark.parametrize("keys,key,match", [
    ("QWeight.Range=7", "QWeight.Range", "Range must be 1, 3 or 15, got 7"),
    ("QWeight.Range=255", "QWeight.Range", "Range must be 1, 3 or 15"),
    ("QWeight.TStartTime=0.5\nQWeight.TEndTime=0.4", "QWeight.TEndTime", "must be >= TStart"),
    ("QWeight.TFactor=0", "QWeight.TFactor", "must be > 0"),
    ("QWeight.TFactor=-1.2", "QWeight.TFactor", "must be > 0"),
    ("QWeight.TStartVal=0", "QWeight.TStartVal", "must be > 0"),
    ("QWeight.Solver=Adam", "QWeight.Solver", "unknown key for QWeight=SLB"),
    ("QWeightSolver.LearningRate=0.1", "QWeightSolver.LearningRate", "weights solver"),
    ("QWeight.Mode=Integer", "QWeight.Mode", "unknown key"),
])
def test_bad_values_are_one_located_line(tmp_path, keys, key, match):
    with pytest.raises(UserError, match=match) as info:
        _net(tmp_path, keys)
    text = str(info.value)
    assert "\n" not in text and "net.ini:" in text and key in text and "[conv1]" in text


def test_slb_on_a_pool_is_refused(tmp_path):
    ini = tmp_path / "net.ini"
    ini.write_text(NET.format(conv_keys="", fc_keys="").replace(
        "[fc]\nInput=bn1", "[pool]\nInput=bn1\nType=Pool\nPoolWidth=2\nPoolHeight=2\n"
        "Pooling=Max\nNbOutputs=4\nMapping.Size=1\nQWeight=SLB\n\n[fc]\nInput=pool"))
    with pytest.raises(UserError, match=r"\[pool\] QWeight: .*Conv and Fc") as info:
        build_network(load_config(ini), input_shape=(2, 6, 6))
    assert "\n" not in str(info.value)


def test_logits_are_learned_as_the_cells_weights(tmp_path):
    net = _net(tmp_path)
    opt = make_optimizer(net, batch_size=4)
    groups = {g["name"]: (g, spec) for g, spec in zip(opt.param_groups, opt.specs, strict=True)}
    conv, conv_spec = groups["conv1/weights"]
    assert [p is net.cells["conv1"].weight_quantizer.logits for p in conv["params"]] == [True]
    assert (conv_spec.schedule.learning_rate, conv_spec.decay, conv_spec.momentum) == (
        0.1, 0.0001, 0.9)
    assert "conv1/qweight" not in groups and "fc/qweight" not in groups
    every = [p for g in opt.param_groups for p in g["params"]]
    assert not any(p is net.cells["conv1"].weight or p is net.cells["fc"].weight for p in every)
    # the summary counts the logits, not the float weights: conv 4*2*3*3 weights x 4 logits,
    # fc 3*(4*4*4) weights x 2 logits + 3 biases
    assert net.cells["conv1"].nb_params() == 72 * 4
    assert net.cells["fc"].nb_params() == 192 * 2 + 3
    assert "SLB R=3" in net.summary() and "SLB R=1 (on Fc: n2q extension)" in net.summary()


def test_one_sgd_step_moves_the_logits_with_decay(tmp_path):
    net = _net(tmp_path)
    q = net.cells["conv1"].weight_quantizer
    for qq in (q, net.cells["fc"].weight_quantizer):
        qq.plan(RunPlan(total_epochs=10))
        qq.start_epoch(1)
    opt = make_optimizer(net, batch_size=4)
    before = q.logits.detach().clone()
    net(torch.rand(4, 2, 6, 6))["softmax"].sum().backward()
    grad = q.logits.grad.clone()
    opt.step()
    # N2D2 SGD, first update: v = -lr*(g + decay*A), A += v
    torch.testing.assert_close(q.logits.detach(), before - 0.1 * (grad + 1e-4 * before))


@pytest.mark.parametrize("conv_keys,fc_keys", [
    ("", ""),
    ("WeightsExportFormat=HWCO", "WeightsExportFormat=CO"),
])
def test_weights_folder_round_trip_in_file_order(tmp_path, conv_keys, fc_keys):
    torch.manual_seed(3)
    net = _net(tmp_path, conv_keys, fc_keys)
    folder = save_weights(net, tmp_path / "weights", plots=False)
    for cell, k in (("conv1", 4), ("fc", 2)):
        q = net.cells[cell].weight_quantizer
        n = q.logits[..., 0].numel()
        logits = read_values(folder / f"{cell}_SLB_logits.syntxt", [k] * n, "weight")
        one_hot = candidates(k - 1)[torch.from_numpy(logits).reshape(n, k).argmax(-1)]
        quant = folder / (f"{cell}_quant_weights.syntxt" if cell == "conv1"
                          else f"{cell}_quant_weights_quant.syntxt")
        # line i of the logits file chooses the weight written at position i of the cell's
        # weights files, whatever their layout
        written = torch.tensor([float(v) for v in quant.read_text().split()])
        torch.testing.assert_close(one_hot, written.reshape(-1), atol=1e-6, rtol=0)
        stored = (folder / f"{cell}_weights.syntxt").read_text().split()
        torch.testing.assert_close(torch.tensor([float(v) for v in stored]), written)
    fresh = _net(tmp_path, conv_keys, fc_keys)
    load_weights(fresh, folder)
    for cell in ("conv1", "fc"):
        assert torch.equal(fresh.cells[cell].weight_quantizer.logits,
                           net.cells[cell].weight_quantizer.logits)
    net.eval()
    fresh.eval()
    x = torch.rand(3, 2, 6, 6)
    torch.testing.assert_close(fresh(x)["softmax"], net(x)["softmax"])


# -- integer deployment through the protocol's fusion -------------------------------------------
@pytest.mark.parametrize("range_,act", [(1, "SAT"), (3, "SAT"), (15, "LSQ")])
def test_slb_lenet_bn_fuses_to_an_integer_network(tmp_path, range_, act):
    """LeNet-BN (configs/LeNet_BN_SLB_W*.ini) with SAT/LSQ activations on its BatchNorms: the
    one-hot SLB weights are an integer grid, so the fusion reading ``integer_grid()`` makes every
    conv an integer node, which gives the fake-quant network's class on every stimulus (or an
    exact tie of the integer logits). Random logits and BatchNorm statistics stand for learning
    (the real-MNIST version is in test_quant_slb_train.py)."""
    from n2q.quant.fusion import FusionCheck, fuse_network  # noqa: PLC0415

    text = (Path(__file__).resolve().parents[1] / "configs" / "LeNet_BN_SLB_W4.ini").read_text()
    bn = "[Bn_def]\nType=BatchNorm\nActivationFunction=Rectifier\n"
    assert bn in text
    text = text.replace(bn, f"[Bn_def]\nType=BatchNorm\nActivationFunction=Linear\nQAct={act}\n"
                        "QAct.Range=15\n" + ("QAct.Alpha=4.0\n" if act == "SAT" else ""))
    text = text.replace("QWeight.Range=15", f"QWeight.Range={range_}")
    (tmp_path / "net.ini").write_text(text)
    torch.manual_seed(range_)
    net = build_network(load_config(tmp_path / "net.ini"), input_shape=(1, 32, 32))
    x = torch.rand(64, 1, 32, 32)
    net.train()
    with torch.no_grad():
        net(x)                              # LSQ step sizes from a first batch
        for name in ("bn1", "bn2", "bn3"):  # statistics of a network that has seen data
            bn_cell = net.cells[name]
            bn_cell.running_var.uniform_(0.5, 2.0)
            bn_cell.running_mean.uniform_(-0.5, 0.5)
            bn_cell.weight.uniform_(0.5, 1.5)
            bn_cell.bias.uniform_(0.0, 0.5)
    net.eval()
    fused, _ = fuse_network(net)
    assert {"conv1", "conv2", "conv3"} <= set(fused.integer_nodes())
    check = FusionCheck()
    check.update(net, fused, x)
    print(check.line())
    assert check.total == 64 and not check.bad_nodes
    assert check.same_class + check.ties == check.total
    assert check.differing <= 1e-3 * check.levels     # float32 rounding ties only
