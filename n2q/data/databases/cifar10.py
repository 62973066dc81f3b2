"""CIFAR10_Database: the binary version (data_batch_1..5.bin, test_batch.bin).

A record is 1 label byte then 3072 bytes: the R, G and B planes of a 32x32 image. Images are
stored BGR like every decoded image (N2D2 reads them into OpenCV matrices).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from n2q.data.databases.base import Database, register_database
from n2q.data.partition import ordered, read_fraction, split_fractions
from n2q.data.root import dataset_path
from n2q.errors import UserError

_PIXELS = 3 * 32 * 32


def read_records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels uint8 [N, label_bytes], images uint8 [N, 3, 32, 32] in BGR order)."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read CIFAR file: {exc}", file=path) from None
    record = label_bytes + _PIXELS
    if raw.size == 0 or raw.size % record:
        raise UserError(f"truncated CIFAR binary file: {raw.size} bytes is not a multiple of "
                        f"the {record}-byte record: re-download it", file=path)
    rows = raw.reshape(-1, record)
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32)[:, ::-1]  # RGB planes -> BGR
    return rows[:, :label_bytes], np.ascontiguousarray(images)


def label_names(path: Path, count: int) -> list[str]:
    """Names from a meta text file (one per line) when present, else "0".."count-1"."""
    if path.is_file():
        names = [n.strip() for n in path.read_text(errors="replace").splitlines() if n.strip()]
        if len(names) == count:
            return names
    return [str(i) for i in range(count)]


class CIFARDatabase(Database):
    """Shared by CIFAR-10 and CIFAR-100: train files -> Learn/Validation, test file -> Test."""

    TRAIN: tuple[str, ...] = ()
    TEST = ""
    LABEL_BYTES = 1
    DEFAULT_PATH = ""
    INSTALL = ""

    def label_column(self) -> int:
        return 0

    def names(self) -> list[str]:
        raise NotImplementedError

    def load_index(self) -> None:
        sec = self.section
        self.path = dataset_path(sec, "DataPath", self.DEFAULT_PATH)
        validation = read_fraction(sec, "Validation", 0.0)
        use_test = sec.bool("UseTestForValidation", False)
        if use_test and validation:
            raise sec.error("Validation", "with UseTestForValidation=1 the test set is the "
                            "validation set: set Validation=0")
        self.labels = self.names()
        images, targets, self._files = [], [], []
        for name in (*self.TRAIN, self.TEST):
            path = self.path / name
            if not path.is_file():
                raise self._error_path("DataPath", path, self.INSTALL)
            labels, imgs = read_records(path, self.LABEL_BYTES)
            column = labels[:, self.label_column()].astype(np.int64)
            if column.max() >= len(self.labels):
                raise UserError(f"label {column.max()} out of range (0..{len(self.labels) - 1})",
                                file=path)
            images.append(imgs)
            targets.append(column)
            self._files.append((len(imgs), path))
        self.images = torch.from_numpy(np.concatenate(images))
        self.targets = np.concatenate(targets)
        n_test = len(images[-1])
        n_train = len(self.targets) - n_test
        test = np.arange(n_train, n_train + n_test, dtype=np.int64)
        train = ordered(np.arange(n_train), self.random_partitioning, self.seed, 2)
        learn, val, _ = split_fractions(train, 1.0 - validation, validation)
        self.partitions = {"Learn": learn, "Validation": test if use_test else val, "Test": test}

    def load(self, stimulus: int) -> torch.Tensor:
        return self.images[stimulus]

    def batch(self) -> torch.Tensor:
        return self.images

    def name(self, stimulus: int) -> str:
        for count, path in self._files:
            if stimulus < count:
                return f"{path}[{stimulus:05d}]"
            stimulus -= count
        raise IndexError(stimulus)


@register_database("CIFAR10_Database")
class CIFAR10Database(CIFARDatabase):
    KEYS = ("DataPath", "Validation", "UseTestForValidation")
    TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
    TEST = "test_batch.bin"
    DEFAULT_PATH = "cifar-10-batches-bin"
    INSTALL = "cifar-10"

    def names(self) -> list[str]:
        return label_names(self.path / "batches.meta.txt", 10)
