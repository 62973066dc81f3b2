"""CIFAR100_Database: train.bin / test.bin, records = coarse byte, fine byte, 3072 bytes."""

from __future__ import annotations

from n2q.data.databases.base import register_database
from n2q.data.databases.cifar10 import CIFARDatabase, label_names


@register_database("CIFAR100_Database")
class CIFAR100Database(CIFARDatabase):
    KEYS = ("DataPath", "Validation", "UseCoarse", "UseTestForValidation")
    TRAIN = ("train.bin",)
    TEST = "test.bin"
    LABEL_BYTES = 2
    DEFAULT_PATH = "cifar-100-binary"
    INSTALL = "cifar-100"

    @property
    def coarse(self) -> bool:
        """UseCoarse=1: the 20 superclasses (first label byte) instead of the 100 classes."""
        return self.section.bool("UseCoarse", False)

    def label_column(self) -> int:
        return 0 if self.coarse else 1

    def names(self) -> list[str]:
        if self.coarse:
            return label_names(self.path / "coarse_label_names.txt", 20)
        return label_names(self.path / "fine_label_names.txt", 100)
