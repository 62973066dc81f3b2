"""net_state/ (spec/weights.md "Full state"): resuming gives the same result as not stopping."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from n2q.errors import UserError
from n2q.io import state as state_module
from n2q.io.state import load_state, save_state
from n2q.net.batchnorm import BatchNormCell
from n2q.net.conv import ConvCell


def make_model(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(ConvCell("conv1", ["sp"], (2, 5, 5), 3, (3, 3)),
                         BatchNormCell("bn1", ["conv1"], (3, 3, 3)))


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    x = torch.randn(4, 2, 5, 5)  # consumes the torch RNG: resumption must restore it
    optimizer.zero_grad()
    model(x).square().mean().backward()
    optimizer.step()


def test_resume_restores_weights_buffers_momentum_and_rng(tmp_path: Path) -> None:
    model = make_model(1)
    optimizer = make_optimizer(model)
    model.train()
    for _ in range(2):
        train_step(model, optimizer)
    random.seed(5)
    np.random.seed(6)
    save_state(tmp_path / "net_state", net=model, optimizer=optimizer, epoch=2,
               data_position={"partition": "Learn", "batch": 17})
    # the uninterrupted run goes on
    train_step(model, optimizer)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    # the resumed run: a fresh model and optimizer, other RNG states
    resumed = make_model(99)
    resumed_optimizer = make_optimizer(resumed)
    train_step(resumed, resumed_optimizer)
    state = load_state(tmp_path / "net_state", net=resumed, optimizer=resumed_optimizer)
    assert state["epoch"] == 2 and state["data_position"]["batch"] == 17
    momentum = resumed_optimizer.state[resumed_optimizer.param_groups[0]["params"][0]]
    assert momentum["momentum_buffer"].abs().sum() > 0
    resumed.train()
    train_step(resumed, resumed_optimizer)
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    for (name, x), (_, y) in zip(model.state_dict().items(), resumed.state_dict().items(),
                                 strict=True):
        assert torch.equal(x, y), name  # weights and running mean / var, bit for bit
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(optimizer.state[p]["momentum_buffer"],
                           resumed_optimizer.state[q]["momentum_buffer"])


def test_state_is_written_atomically(tmp_path: Path, monkeypatch) -> None:
    save_state(tmp_path / "net_state", epoch=1)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(state_module.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_state(tmp_path / "net_state", epoch=2)
    monkeypatch.undo()
    assert load_state(tmp_path / "net_state", restore_rng=False)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net_state"]


def test_only_plain_values_are_accepted_at_save_time(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\['schedule'\]\['f'\] is a function"):
        save_state(tmp_path / "s", schedule={"f": lambda step: step})
    assert not (tmp_path / "s").exists()


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no saved state in .*nowhere"):
        load_state(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"bad: the saved state in this folder has no checksum"):
        load_state(tmp_path / "bad")
    save_state(tmp_path / "s", epoch=3)
    with pytest.raises(UserError, match="the saved state has no 'optimizer' .*epoch"):
        load_state(tmp_path / "s", optimizer=torch.optim.SGD([nn.Parameter(torch.ones(1))],
                                                             lr=0.1))


def test_numpy_values_are_stored_as_plain_data(tmp_path: Path) -> None:
    save_state(tmp_path / "s", best=np.float64(0.9725), counts=np.arange(3),
               nested={"epoch": np.int64(4)})
    state = load_state(tmp_path / "s", restore_rng=False)
    assert state["best"] == 0.9725 and type(state["best"]) is float
    assert torch.equal(state["counts"], torch.arange(3))
    assert state["nested"] == {"epoch": 4}
