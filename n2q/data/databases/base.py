"""The data base contract shared by every ``[database] Type``.

A data base knows its stimuli (ids 0..N-1 in file order), their labels, the label names and the
three partitions (arrays of ids; a stimulus may sit in two partitions, e.g. ILSVRC2012's val set
used for Validation and Test). Decoding is lazy and per stimulus (``load``) unless the whole
data base is small and uniform (``batch``), in which case the provider transforms it at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from n2q.data.partition import PARTITIONS
from n2q.registry import registrar

if TYPE_CHECKING:
    from n2q.config import Section

DATABASES: dict[str, type[Database]] = {}


# ``@register_database("Name")``: the class ``Type=Name`` selects (its ``TYPE`` = "Name")
register_database = registrar(DATABASES, "TYPE")


class Database:
    TYPE = ""
    KEYS: tuple[str, ...] = ()  # keys of this type, besides COMMON_KEYS
    COMMON_KEYS = ("Type", "RandomPartitioning", "DefaultLabel")

    def __init__(self, section: Section, seed: int) -> None:
        section.check_keys((*self.COMMON_KEYS, *self.KEYS), f"a {self.TYPE}")
        self.section = section
        self.seed = seed
        self.random_partitioning = section.bool("RandomPartitioning", True)
        self.default_label: str | None = section.str("DefaultLabel", None)
        self.labels: list[str] = []
        self.targets = np.zeros(0, dtype=np.int64)  # label index per stimulus id
        self.partitions: dict[str, np.ndarray] = {p: np.zeros(0, np.int64) for p in PARTITIONS}
        self.load_index()

    # -- to implement ----------------------------------------------------------------------
    def load_index(self) -> None:
        """Find the stimuli, set ``labels``, ``targets`` and ``partitions``."""
        raise NotImplementedError

    def load(self, stimulus: int) -> torch.Tensor:
        """Stimulus ``stimulus`` decoded: uint8 (or float32) [C, H, W], channels BGR."""
        raise NotImplementedError

    def name(self, stimulus: int) -> str:
        raise NotImplementedError

    def batch(self) -> torch.Tensor | None:
        """All stimuli as one uint8 [N, C, H, W] tensor when they are in memory, else None."""
        return None

    # -- shared ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.targets)

    def partition_sizes(self) -> dict[str, int]:
        return {p: len(ids) for p, ids in self.partitions.items()}

    def _error_path(self, key: str, path: Path, install: str | None) -> Exception:
        from n2q.data.root import missing_dataset

        return missing_dataset(self.section, key, path, f"{self.TYPE} data", install)
