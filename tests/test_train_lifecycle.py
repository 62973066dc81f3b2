"""The quantizer lifecycle calls of the learning loop (n2q.quant.protocol), recorded by a probe
quantizer registered for these tests only: order, epoch and step numbers, resume, -learn N,
IterationSize, and the calibration pass's modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import make_tiny_workdir, n2q, read_weights, write_net

from n2q.quant.protocol import RunPlan
from n2q.quant.registry import ACT_QUANTIZERS, ActQuantizer

# helpers' tiny network (192 stimuli, Validation=0.25: 144 Learn stimuli = 9 batches of 16
# per epoch) with a BatchNorm + probe quantizer as its middle layer


def probe_layer(iteration_size: int) -> tuple[str, str]:
    return ("bn1", "Type=BatchNorm\nNbOutputs=24\nActivationFunction=Rectifier\n"
            f"QAct=LifecycleProbe\nSolvers.IterationSize={iteration_size}")


CALIBRATE_AFTER = 2  # the epoch after which the probe asks for a calibration pass


class Probe(ActQuantizer):
    """Identity activation quantizer that records every lifecycle call in ``Probe.calls``;
    its forward records the modes while calibrating (itself in eval, its BatchNorm in train)."""

    calls: list[tuple[Any, ...]] = []

    @classmethod
    def from_section(cls, sec: Any, cell: Any = None) -> Probe:
        return cls()

    def bind(self, cell: Any, net: Any) -> None:
        self.__dict__["cell"] = cell  # not a submodule: the cell holds this quantizer
        Probe.calls.append(("bind", cell.name, net.cells[cell.name] is cell))

    def plan(self, plan: RunPlan) -> None:
        Probe.calls.append(("plan", plan))

    def start_epoch(self, epoch: int) -> None:
        Probe.calls.append(("start_epoch", epoch))

    def after_step(self, step: int) -> None:
        Probe.calls.append(("after_step", step))

    def wants_calibration(self, epoch: int) -> bool:
        Probe.calls.append(("wants_calibration", epoch))
        return epoch == CALIBRATE_AFTER

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.cell.training:
            Probe.calls.append(("calibration_batch", len(x), torch.is_grad_enabled()))
        return x


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(ACT_QUANTIZERS, "LifecycleProbe", Probe)
    Probe.calls = []
    return make_tiny_workdir(tmp_path, monkeypatch)


def write_probe_net(folder: Path, iteration_size: int = 1) -> str:
    return write_net(folder, name="probe.ini", middle=probe_layer(iteration_size),
                     common=f"Solvers.IterationSize={iteration_size}")


def run(*args: Any) -> list[tuple[Any, ...]]:
    """One command; the lifecycle calls it made."""
    Probe.calls = []
    assert n2q(*args) == 0
    return list(Probe.calls)


def epoch_calls(epoch: int, first_step: int, steps: int) -> list[tuple[Any, ...]]:
    """What one epoch of a -learn-epoch run calls: its start, its steps, the question."""
    calls: list[tuple[Any, ...]] = [("start_epoch", epoch)]
    calls += [("after_step", s) for s in range(first_step, first_step + steps)]
    calls.append(("wants_calibration", epoch))
    if epoch == CALIBRATE_AFTER:  # 9 Learn batches of 16, without gradient
        calls += [("calibration_batch", 16, False)] * 9
    return calls


def plan(total: int, start: int, steps_per_epoch: int = 9) -> tuple[str, RunPlan]:
    return ("plan", RunPlan(total_epochs=total, start_epoch=start, learn_size=144,
                            batch_size=16, steps_per_epoch=steps_per_epoch))


def test_learn_epoch_calls_in_order_and_resume_counts_trained_epochs(tiny: Path) -> None:
    ini = write_probe_net(tiny)
    straight = run(ini, "-learn-epoch", 3, "-seed", 5)
    assert straight == [("bind", "bn1", True), plan(3, 0)] + epoch_calls(1, 1, 9) + (
        epoch_calls(2, 10, 9) + epoch_calls(3, 19, 9))
    weights = read_weights(tiny / "weights_validation")
    # stopped after one epoch, resumed: the same calls from epoch 2 on, the same weights
    assert run(ini, "-learn-epoch", 1, "-seed", 5) == [("bind", "bn1", True), plan(1, 0)] + (
        epoch_calls(1, 1, 9))
    resumed = run(ini, "-learn-epoch", 3, "-l", "net_state_validation")
    assert resumed == [("bind", "bn1", True), plan(3, 1)] + epoch_calls(2, 10, 9) + (
        epoch_calls(3, 19, 9))
    assert read_weights(tiny / "weights_validation") == weights


def test_a_test_only_run_binds_and_nothing_else(tiny: Path) -> None:
    ini = write_probe_net(tiny)
    run(ini, "-learn-epoch", 1, "-seed", 5)
    assert run(ini, "-test") == [("bind", "bn1", True)]


def stimuli_calls(first_batch: int, last_batch: int) -> list[tuple[Any, ...]]:
    """-learn 300 on 144 Learn stimuli, batches of 16: batches 1-9 are epoch 1 (stimuli
    0-143), 10-18 epoch 2, batch 19 (12 stimuli, 288-299) epoch 3, ended by the run."""
    calls: list[tuple[Any, ...]] = []
    for batch in range(first_batch, last_batch + 1):
        epoch = (batch - 1) // 9 + 1
        if batch == first_batch or (batch - 1) % 9 == 0:
            calls.append(("start_epoch", epoch))
        calls.append(("after_step", batch))
        if batch % 9 == 0 or batch == 19:
            calls.append(("wants_calibration", epoch))
            if epoch == CALIBRATE_AFTER:
                calls += [("calibration_batch", 16, False)] * 9
    return calls


def test_learn_stimuli_derives_the_epochs_from_the_stimuli_seen(tiny: Path) -> None:
    ini = write_probe_net(tiny)
    # -log 100: log points every 112 stimuli (7 batches)
    straight = run(ini, "-learn", 300, "-log", 100, "-seed", 2)
    assert straight == [("bind", "bn1", True), plan(3, 0)] + stimuli_calls(1, 19)
    weights = read_weights(tiny / "weights_validation")
    run(ini, "-learn", 112, "-log", 100, "-seed", 2)
    # resumed inside epoch 1 (112 of 144 stimuli): epoch 1 is announced again
    resumed = run(ini, "-learn", 300, "-log", 100, "-l", "net_state_validation")
    assert resumed == [("bind", "bn1", True), plan(3, 0)] + stimuli_calls(8, 19)
    assert read_weights(tiny / "weights_validation") == weights


def test_iteration_size_steps_every_k_batches(tiny: Path) -> None:
    ini = write_probe_net(tiny, iteration_size=2)
    calls = run(ini, "-learn-epoch", 1, "-seed", 5)
    # 9 batches, an update every 2nd: steps 1-4 (the 9th batch waits for the 10th)
    assert calls == [("bind", "bn1", True), plan(1, 0, steps_per_epoch=4),
                     ("start_epoch", 1)] + [("after_step", s) for s in range(1, 5)] + [
                         ("wants_calibration", 1)]


def test_find_lr_is_a_one_epoch_run_for_the_quantizers(tiny: Path) -> None:
    ini = write_probe_net(tiny)
    calls = run(ini, "-find-lr", 80, "-seed", 5)
    # 80 stimuli = 5 batches of 16, one step each; no calibration question
    assert calls == [("bind", "bn1", True), ("plan", RunPlan(
        total_epochs=1, start_epoch=0, learn_size=144, batch_size=16, steps_per_epoch=5)),
        ("start_epoch", 1)] + [("after_step", s) for s in range(1, 6)]
