"""What the seed's SLB ResNet-18 CIFAR-10 recipe needs besides SLB itself (seeds 000/002):
the ``poly`` learning rate with linear warm-up (PolyDecay + WarmUpDuration/WarmUpLRFrac) and
label smoothing as N2D2 soft targets (TargetValue / DefaultValue on a Softmax WithLoss
target), checked against hand-worked values and Golden Stick's formulas written out here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from n2q.config import load_config
from n2q.errors import UserError
from n2q.train.reports import TargetReport
from n2q.train.schedules import Schedule, schedule_problem
from n2q.train.solver_keys import read_solver_spec
from n2q.train.targets import TargetInfo


def golden_stick_poly(i: int, lr_init: float, lr_max: float, total: int, warm: int) -> float:
    """models/official/cv/ResNet/src/lr_generator.py, ``poly`` mode, step i (0-based)."""
    if i < warm:
        return lr_init + (lr_max - lr_init) / warm * i
    base = 1.0 - (i - warm) / (total - warm)
    return max(lr_max * base * base, 0.0)


POLY = Schedule(learning_rate=0.1, policy="PolyDecay", power=2.0, max_iterations=110,
                warm_up_duration=10, warm_up_lr_frac=0.1)


@pytest.mark.parametrize("updates,rate", [
    (0, 0.01), (5, 0.055), (9, 0.091), (10, 0.1), (60, 0.025), (109, 0.1 * 0.01 ** 2),
    (110, 0.0), (500, 0.0)])
def test_poly_with_warm_up_by_hand(updates, rate):
    assert POLY.rate(updates, 32) == pytest.approx(rate, abs=1e-12)


def test_poly_with_warm_up_is_golden_sticks_schedule():
    # 5 warm-up epochs of 1562 steps, 100 epochs, 0.01 -> 0.1 then 0.1*(1 - progress)^2
    steps, epochs, warm = 1562, 100, 5
    s = Schedule(learning_rate=0.1, policy="PolyDecay", power=2.0,
                 max_iterations=epochs * steps, warm_up_duration=warm * steps,
                 warm_up_lr_frac=0.1)
    for i in (0, 1, 777, warm * steps - 1, warm * steps, 50 * steps + 3, epochs * steps - 1):
        assert s.rate(i, 32) == pytest.approx(
            golden_stick_poly(i, 0.01, 0.1, epochs * steps, warm * steps), rel=1e-12)


def test_poly_without_warm_up_is_unchanged():
    s = Schedule(learning_rate=0.1, policy="PolyDecay", power=2.0, max_iterations=100)
    assert s.rate(50, 1) == pytest.approx(0.025)


def _solver_section(tmp_path: Path, body: str):
    ini = tmp_path / "net.ini"
    ini.write_text(f"[conv1]\nType=Conv\n{body}\n")
    return load_config(ini)["conv1"]


def test_solver_keys_make_the_poly_warm_up(tmp_path):
    sec = _solver_section(tmp_path, "Solvers.LearningRate=0.1\nSolvers.LearningRatePolicy="
                          "PolyDecay\nSolvers.Power=2\nSolvers.MaxIterations=110\n"
                          "Solvers.WarmUpDuration=10\nSolvers.WarmUpLRFrac=0.1")
    assert read_solver_spec(sec, "weights").schedule == POLY


@pytest.mark.parametrize("body,key,match", [
    ("Solvers.LearningRatePolicy=StepDecay\nSolvers.WarmUpDuration=10",
     "Solvers.WarmUpDuration", "no effect with LearningRatePolicy=StepDecay"),
    ("Solvers.WarmUpDuration=10", "Solvers.WarmUpDuration", "no effect"),
    ("Solvers.LearningRatePolicy=PolyDecay\nSolvers.MaxIterations=10\n"
     "Solvers.WarmUpDuration=10", "Solvers.WarmUpDuration", "smaller than MaxIterations"),
    ("Solvers.LearningRatePolicy=PolyDecay\nSolvers.MaxIterations=100\n"
     "Solvers.WarmUpDuration=10\nSolvers.WarmUpLRFrac=1.5", "Solvers.WarmUpLRFrac",
     "must be in \\[0, 1\\]"),
])
def test_warm_up_mistakes_are_located(tmp_path, body, key, match):
    with pytest.raises(UserError, match=match) as info:
        read_solver_spec(_solver_section(tmp_path, body), "weights")
    assert "net.ini:" in str(info.value) and key in str(info.value)


def test_warm_up_problem_names_the_key():
    assert schedule_problem(Schedule(policy="None", warm_up_duration=3))[0] == "WarmUpDuration"


# -- label smoothing ------------------------------------------------------------------------------
def _target(tmp_path: Path, classes: int, target: float, default: float) -> TargetInfo:
    return TargetInfo(section="softmax.Target", cell="softmax", loss_kind="softmax_ce",
                      nb_outputs=classes, nb_classes=classes, target_value=target,
                      default_value=default, top_n=1,
                      report=TargetReport(tmp_path / "t", [str(i) for i in range(classes)]))


def test_soft_targets_by_hand(tmp_path):
    # eps = 0.3 over 3 classes, label 0: t = [0.7, 0.15, 0.15]; z = [ln 2, 0, 0]:
    # p = [1/2, 1/4, 1/4], loss = 0.7 ln 2 + 0.3 ln 4, gradient p - t = [-0.2, 0.1, 0.1]
    info = _target(tmp_path, 3, 0.7, 0.15)
    z = torch.tensor([[math.log(2.0), 0.0, 0.0]], requires_grad=True)
    loss = info.loss(z, torch.tensor([0]))
    assert loss.item() == pytest.approx(0.7 * math.log(2) + 0.3 * math.log(4), rel=1e-6)
    loss.backward()
    torch.testing.assert_close(z.grad, torch.tensor([[-0.2, 0.1, 0.1]]), atol=1e-6, rtol=0)


def test_label_smoothing_equals_torchs_with_mindsporeish_off_values(tmp_path):
    # Golden Stick's CrossEntropySmooth: on = 1 - eps, off = eps/(K-1); torch's label_smoothing
    # e' puts 1 - e' + e'/K and e'/K: the same targets for e' = eps*K/(K-1)
    torch.manual_seed(0)
    eps, k = 0.1, 10
    info = _target(tmp_path, k, 1 - eps, eps / (k - 1))
    z = torch.randn(8, k, 1, 1)
    labels = torch.randint(0, k, (8,))
    expected = F.cross_entropy(z.flatten(1), labels, label_smoothing=eps * k / (k - 1))
    torch.testing.assert_close(info.loss(z, labels), expected, atol=1e-6, rtol=1e-6)


def test_default_targets_are_the_hard_cross_entropy(tmp_path):
    torch.manual_seed(1)
    info = _target(tmp_path, 4, 1.0, 0.0)
    assert not info.soft_targets
    z, labels = torch.randn(5, 4), torch.randint(0, 4, (5,))
    torch.testing.assert_close(info.loss(z, labels), F.cross_entropy(z, labels))


def test_soft_targets_skip_unscored_stimuli(tmp_path):
    info = _target(tmp_path, 3, 0.7, 0.15)
    info.label_map = torch.tensor([0, 1, -1])          # data base label 2 is not scored
    z = torch.tensor([[math.log(2.0), 0.0, 0.0], [5.0, -1.0, 2.0]])
    loss = info.loss(z, info.map_labels(torch.tensor([0, 2])))
    assert loss.item() == pytest.approx(0.7 * math.log(2) + 0.3 * math.log(4), rel=1e-6)
