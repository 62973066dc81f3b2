"""What the phases of a run (learn, evaluate, find-lr, test) share: :class:`RunContext`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from n2q.config import Config
    from n2q.data.provider import StimuliProvider
    from n2q.net import Network
    from n2q.train.targets import TargetInfo


@dataclass
class RunContext:
    """The network, its data and targets, where it runs and where it writes."""

    cfg: Config
    sp: StimuliProvider
    net: Network
    device: torch.device
    seed: int
    targets: list[TargetInfo]
    metric: str = "Sensitivity"       # -valid-metric: picks the best model
    report_every: int = 100           # -report: stimuli between two progress updates
    workdir: Path = Path(".")
    bench: bool = False               # -bench: write timings/
    dtype: torch.dtype = torch.float32  # DefaultDataType: the inputs are cast to it

    def learn_size(self) -> int:
        """Stimuli of the Learn partition."""
        return self.sp.partition_sizes().get("Learn", 0)
