"""SGD / Adam solvers: N2D2's update rules on hand-computable tensors, torch references, keys."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from n2q.config import load_config
from n2q.errors import UserError
from n2q.train.schedules import Schedule
from n2q.train.solver_keys import SolverSpec, parse_clamping, read_solver_spec
from n2q.train.solvers import N2D2Optimizer, cell_parameter_groups


def one_param_optimizer(value: float, spec: SolverSpec, batch: int = 1) -> tuple:
    w = nn.Parameter(torch.tensor([value], dtype=torch.float64))
    return w, N2D2Optimizer([{"params": [w], "spec": spec}], batch_size=batch)


def square_step(w: torch.Tensor, opt: N2D2Optimizer) -> None:
    (w ** 2).sum().backward()  # gradient 2w
    opt.step()


def test_sgd_momentum_decay_with_changing_lr_by_hand() -> None:
    spec = SolverSpec(schedule=Schedule(learning_rate=0.1, policy="StepDecay", decay=0.5),
                      momentum=0.9, decay=0.1)
    w, opt = one_param_optimizer(1.0, spec)
    square_step(w, opt)  # v = -0.1*(2 + 0.1) = -0.21
    assert w.item() == pytest.approx(0.79)
    square_step(w, opt)  # lr 0.05: v = 0.9*-0.21 - 0.05*(1.58 + 0.079) = -0.27195
    assert w.item() == pytest.approx(0.51805)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_sgd_constant_lr_equals_torch_sgd() -> None:
    torch.manual_seed(0)
    ref = nn.Linear(5, 3)
    mine = nn.Linear(5, 3)
    mine.load_state_dict(ref.state_dict())
    spec = SolverSpec(schedule=Schedule(learning_rate=0.05), momentum=0.9, decay=5e-4)
    opt = N2D2Optimizer([{"params": list(mine.parameters()), "spec": spec}], batch_size=4)
    torch_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(5):
        x, y = torch.randn(4, 5), torch.randn(4, 3)
        nn.functional.mse_loss(mine(x), y).backward()
        opt.step()
        torch_opt.zero_grad()
        nn.functional.mse_loss(ref(x), y).backward()
        torch_opt.step()
    for a, b in zip(mine.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_adam_equals_torch_adam() -> None:
    torch.manual_seed(1)
    ref = nn.Linear(4, 2)
    mine = nn.Linear(4, 2)
    mine.load_state_dict(ref.state_dict())
    spec = SolverSpec(type="Adam", schedule=Schedule(learning_rate=0.01), beta1=0.8,
                      beta2=0.99, epsilon=1e-6)
    opt = N2D2Optimizer([{"params": list(mine.parameters()), "spec": spec}], batch_size=8)
    torch_opt = torch.optim.Adam(ref.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    assert_same_steps(mine, opt, ref, torch_opt, steps=6, shape=(8, 4))


@pytest.mark.parametrize("clamping, start, grad, want", [
    ("-1.0:1.0", 0.95, -1.0, 1.0),     # 0.95 + 0.1 -> clamped to 1
    ("-1.0:1.0", -0.95, 1.0, -1.0),
    (":0.5", 0.45, -1.0, 0.5),
    ("0.3:", 0.35, 1.0, 0.3),
    ("", 0.95, -1.0, 1.05),
])
def test_clamping_after_update(clamping: str, start: float, grad: float, want: float) -> None:
    low, high = parse_clamping(clamping)
    spec = SolverSpec(schedule=Schedule(learning_rate=0.1), clamp_min=low, clamp_max=high)
    w, opt = one_param_optimizer(start, spec)
    (w * grad).sum().backward()
    opt.step()
    assert w.item() == pytest.approx(want)


def test_iteration_size_accumulates_then_updates_with_the_mean() -> None:
    spec = SolverSpec(schedule=Schedule(learning_rate=0.1, iteration_size=2))
    w, opt = one_param_optimizer(1.0, spec)
    (2.0 * w).sum().backward()
    opt.step()
    assert w.item() == 1.0 and w.grad is not None  # no update, gradient kept
    (4.0 * w).sum().backward()
    opt.step()
    assert w.item() == pytest.approx(1.0 - 0.1 * 3.0)  # mean gradient of the two batches
    assert w.grad is None and opt.param_groups[0]["updates"] == 1


def test_steps_count_the_updates_of_the_group_that_updates_most_often() -> None:
    """IterationSize 2 and 3 in two groups: after 6 batches, 3 and 2 updates; ``steps`` is
    the first (what the quantizers' after_step counts), and it survives a state dict."""
    a, b = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
    groups = [{"params": [p], "spec": SolverSpec(schedule=Schedule(iteration_size=k))}
              for p, k in ((a, 2), (b, 3))]
    opt = N2D2Optimizer(groups, batch_size=1)
    assert opt.iteration_size == 2 and opt.steps == 0
    seen = []
    for _ in range(6):
        (a + b).sum().backward()
        opt.step()
        seen.append(opt.steps)
    assert seen == [0, 1, 1, 2, 2, 3]
    assert [g["updates"] for g in opt.param_groups] == [3, 2]
    again = N2D2Optimizer([{"params": [p], "spec": SolverSpec(schedule=Schedule(
        iteration_size=k))} for p, k in ((a, 2), (b, 3))], batch_size=1)
    again.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert again.steps == 3


def test_state_dict_round_trip_keeps_counters_and_momentum() -> None:
    spec = SolverSpec(schedule=Schedule(learning_rate=0.1, policy="StepDecay", decay=0.5),
                      momentum=0.9)
    w, opt = one_param_optimizer(1.0, spec)
    square_step(w, opt)
    w2, opt2 = one_param_optimizer(w.item(), spec)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as if read back from a file
    square_step(w, opt)
    square_step(w2, opt2)
    assert w2.item() == w.item()
    assert opt2.param_groups[0]["updates"] == 2


@pytest.mark.parametrize("text", ["1:0", "a:b", "1", "1:2:3"])
def test_bad_clamping_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_clamping(text)


# -- keys ---------------------------------------------------------------------------------------
def section_of(tmp_path: Path, body: str, name: str = "conv1"):
    ini = tmp_path / "net.ini"
    ini.write_text(f"[{name}]\n{body}\n")
    return load_config(ini)[name]


def test_solvers_keys_apply_to_both_and_specific_keys_win(tmp_path: Path) -> None:
    sec = section_of(tmp_path, "Solvers.LearningRate=0.2\nSolvers.Momentum=0.8\n"
                     "WeightsSolver.LearningRate=0.05\nBiasSolver.Decay=0.001\n"
                     "Solvers.Clamping=-1.0:1.0\nSolvers.LearningRatePolicy=StepDecay\n"
                     "Solvers.LearningRateStepSize=6400\nSolvers.LearningRateDecay=0.993")
    weights = read_solver_spec(sec, "weights")
    biases = read_solver_spec(sec, "biases")
    assert weights.schedule.learning_rate == 0.05 and biases.schedule.learning_rate == 0.2
    assert weights.momentum == biases.momentum == 0.8
    assert weights.decay == 0.0 and biases.decay == 0.001
    assert (weights.clamp_min, weights.clamp_max) == (-1.0, 1.0)
    assert weights.schedule.policy == "StepDecay" and weights.schedule.step_size == 6400
    assert weights.schedule.decay == pytest.approx(0.993)


def test_defaults_of_the_spec(tmp_path: Path) -> None:
    sgd = read_solver_spec(section_of(tmp_path, "Type=Conv"), "weights")
    assert (sgd.type, sgd.schedule.learning_rate, sgd.momentum, sgd.decay) == ("SGD", 0.01, 0, 0)
    assert sgd.schedule.warm_up_lr_frac == 0.25 and sgd.schedule.decay == 0.1
    adam = read_solver_spec(section_of(tmp_path, "Solvers=Adam"), "biases")
    assert (adam.type, adam.schedule.learning_rate, adam.beta1, adam.beta2, adam.epsilon) == (
        "Adam", 0.001, 0.9, 0.999, 1e-8)


def test_type_keys(tmp_path: Path) -> None:
    sec = section_of(tmp_path, "Solvers=SGD\nBiasSolver=Adam\nQWeightSolver=adam")
    assert read_solver_spec(sec, "weights").type == "SGD"
    assert read_solver_spec(sec, "biases").type == "Adam"
    assert read_solver_spec(sec, "qweight").type == "Adam"
    assert read_solver_spec(sec, "qact").type == "SGD"


@pytest.mark.parametrize("body, message", [
    ("Solvers.LearningRat=0.1", "did you mean Solvers.LearningRate?"),
    ("WeightsSolver.Momentun=0.9", "did you mean WeightsSolver.Momentum?"),
    ("Solvers=Adam\nSolvers.Momentum=0.9", "Momentum is not a key of the Adam solver"),
    ("Solvers=RMSProp", "unknown solver 'RMSProp'"),
    ("Solvers.Clamping=1.0:-1.0", "not a clamping range"),
    ("Solvers.LearningRatePolicy=Cosine", "unknown value 'Cosine'"),
    ("Solvers.LearningRatePolicy=PolyDecay", "MaxIterations must be > 0"),
    ("Solvers.PolyakMomentum=0", "PolyakMomentum=0 is not supported"),
])
def test_bad_solver_keys_are_located_user_errors(tmp_path: Path, body: str, message: str) -> None:
    cell = nn.Linear(2, 2)
    cell.section = section_of(tmp_path, body)
    line = body.count("\n") + 2  # the bad key is the last line of the section
    with pytest.raises(UserError, match=f"net.ini:{line}: \\[conv1\\]") as error:
        cell_parameter_groups("conv1", cell)
    assert message in str(error.value)


class FakeQuantizer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(8.0))


def test_groups_per_kind_with_their_own_keys(tmp_path: Path) -> None:
    cell = nn.Conv2d(1, 2, 3)
    cell.type = "Conv"
    cell.section = section_of(tmp_path, "WeightsSolver.LearningRate=0.05\n"
                              "BiasSolver.LearningRate=0.1\nQWeightSolver.LearningRate=0.001\n"
                              "QActSolver=Adam")
    cell.weight_quantizer = None
    cell.act_quantizer = FakeQuantizer()
    groups = {g["name"]: g for g in cell_parameter_groups("conv1", cell)}
    assert set(groups) == {"conv1/weights", "conv1/biases", "conv1/qact"}
    assert groups["conv1/weights"]["params"][0] is cell.weight
    assert groups["conv1/weights"]["spec"].schedule.learning_rate == 0.05
    assert groups["conv1/biases"]["spec"].schedule.learning_rate == 0.1
    assert groups["conv1/qact"]["spec"].type == "Adam"
    assert groups["conv1/qact"]["params"][0] is cell.act_quantizer.alpha


def test_batchnorm_scale_solver(tmp_path: Path) -> None:
    cell = nn.BatchNorm2d(3)
    cell.type = "BatchNorm"
    cell.section = section_of(tmp_path, "ScaleSolver.LearningRate=0.3\nSolvers.LearningRate=0.7")
    groups = {g["name"]: g["spec"] for g in cell_parameter_groups("bn1", cell)}
    assert groups["bn1/scales"].schedule.learning_rate == 0.3
    assert groups["bn1/biases"].schedule.learning_rate == 0.7


def test_many_groups_equal_torch_sgd_param_groups() -> None:
    """Groups sharing hyper-parameters are updated together: same result as one by one."""
    torch.manual_seed(2)
    ref = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3))
    mine = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3))
    mine.load_state_dict(ref.state_dict())
    lrs = [0.05, 0.1, 0.05, 0.1]  # weights / biases of two layers: two buckets
    params = list(mine.parameters())
    opt = N2D2Optimizer([{"params": [p], "spec": SolverSpec(
        schedule=Schedule(learning_rate=lr), momentum=0.9, decay=1e-3)}
        for p, lr in zip(params, lrs, strict=True)], batch_size=4)
    torch_opt = torch.optim.SGD([{"params": [p], "lr": lr}
                                 for p, lr in zip(ref.parameters(), lrs, strict=True)],
                                momentum=0.9, weight_decay=1e-3)
    assert_same_steps(mine, opt, ref, torch_opt, steps=4, shape=(4, 6))


def assert_same_steps(mine: nn.Module, opt: torch.optim.Optimizer, ref: nn.Module,
                      torch_opt: torch.optim.Optimizer, steps: int,
                      shape: tuple[int, int]) -> None:
    """``steps`` updates of both on the same random batches: the parameters stay equal."""
    for _ in range(steps):
        x = torch.randn(*shape)
        mine(x).pow(2).mean().backward()
        opt.step()
        torch_opt.zero_grad()
        ref(x).pow(2).mean().backward()
        torch_opt.step()
    for a, b in zip(mine.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("policy, step_size, want", [
    # StepDecay, a step = 2 updates of 4 stimuli: logged when it changes (0.1 x 0.5^k)
    ("StepDecay", 8, ["Learning rate after 2(x4) iteration(s): 0.05",
                      "Learning rate after 4(x4) iteration(s): 0.025"]),
    # a step of 1 stimulus changes the rate at every update: nothing logged
    ("StepDecay", 1, []),
    ("CosineDecay", 1, []),
    ("None", 8, [])])
def test_rate_change_lines(policy: str, step_size: int, want: list[str]) -> None:
    p = nn.Parameter(torch.zeros(3))
    schedule = Schedule(learning_rate=0.1, policy=policy, step_size=step_size, decay=0.5,
                        max_iterations=1000)
    lines: list[str] = []
    opt = N2D2Optimizer([{"params": [p], "spec": SolverSpec(schedule=schedule)}],
                        batch_size=4, on_rate_change=lines.append)
    for _ in range(5):
        p.grad = torch.ones(3)
        opt.step()
    assert lines == want
