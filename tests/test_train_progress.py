"""Progress display: a tqdm bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

import pytest

from n2q.train import progress as progress_module
from n2q.train.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_tqdm_bar_with_loss_accuracy_and_rate() -> None:
    stream = Terminal()
    bar = Progress(total=256, desc="Epoch 1/2", every=100, stream=stream, refresh=0.0)
    for _ in range(4):
        bar.update(64, loss="0.5000", acc="0.9000")
    bar.close()
    text = stream.getvalue()
    assert "Epoch 1/2" in text and "loss=0.5000 acc=0.9000" in text and "stim/s" in text
    assert "256/256" in text


def test_pipes_get_plain_lines_every_report_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "PLAIN_MIN_INTERVAL", 0.0)
    stream = io.StringIO()
    bar = Progress(total=300, desc="Test", every=100, stream=stream)
    for _ in range(6):
        bar.update(50, acc="1")
    lines = stream.getvalue().splitlines()
    assert [line.split(" stimuli")[0] for line in lines] == [
        "Test: 100/300", "Test: 200/300", "Test: 300/300"]
    assert "\r" not in stream.getvalue()


def test_plain_lines_are_rate_limited_but_the_last_one_shows() -> None:
    stream = io.StringIO()
    bar = Progress(total=1000, desc="Learn", every=10, stream=stream)
    for _ in range(100):
        bar.update(10)
    lines = stream.getvalue().splitlines()
    assert len(lines) <= 2 and lines[-1].startswith("Learn: 1000/1000")
