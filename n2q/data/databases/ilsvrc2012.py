"""ILSVRC2012_Database: train/<wnid>/*.JPEG, val/*.JPEG + val.txt, labels from synsets.txt.

``synsets.txt``: one line per class, the wnid first (``n01440764 tench, Tinca tinca``); the
line order gives the label index. ``val.txt``: ``<file> <label index>`` per line (0-based, as
in Caffe's ImageNet files). Learn: the Learn fraction of train/ (the rest goes to Test);
Validation: val/; Test: also val/ with UseValidationForTest=1 (the default). With
BackgroundClass=1 a "background" label 0 comes first and every class index moves up by one.
"""

from __future__ import annotations

import numpy as np

from n2q.data.databases.base import register_database
from n2q.data.databases.files import FileDatabase
from n2q.data.images import IMAGE_EXTENSIONS
from n2q.data.partition import ordered, read_fraction, split_fractions
from n2q.data.root import dataset_path
from n2q.errors import UserError


@register_database("ILSVRC2012_Database")
class ILSVRC2012Database(FileDatabase):
    KEYS = ("Learn", "UseValidationForTest", "BackgroundClass", "DataPath", "LabelPath")

    def load_index(self) -> None:
        sec = self.section
        learn = read_fraction(sec, "Learn")
        use_val_for_test = sec.bool("UseValidationForTest", True)
        background = sec.bool("BackgroundClass", False)
        self.path = dataset_path(sec, "DataPath", "ILSVRC2012")
        label_path = dataset_path(sec, "LabelPath", "ILSVRC2012/synsets.txt")
        if not self.path.is_dir():
            raise self._error_path("DataPath", self.path, None)
        if not label_path.is_file():
            raise self._error_path("LabelPath", label_path, None)
        wnids = [line.split()[0] for line in label_path.read_text(errors="replace").splitlines()
                 if line.strip()]
        shift = 1 if background else 0
        self.labels = (["background"] if background else []) + wnids
        index = {w: i + shift for i, w in enumerate(wnids)}
        files, targets = [], []
        train = self.path / "train"
        if train.is_dir():
            for wnid_dir in sorted(p for p in train.iterdir() if p.is_dir()):
                if wnid_dir.name not in index:
                    raise UserError(f"class folder {wnid_dir.name} is not listed in {label_path}",
                                    file=wnid_dir)
                for f in sorted(wnid_dir.iterdir()):
                    if f.suffix.lower() in IMAGE_EXTENSIONS:
                        files.append(f)
                        targets.append(index[wnid_dir.name])
        n_train = len(files)
        files_val, targets_val = self._validation(shift, len(wnids))
        self.files = files + files_val
        self.targets = np.asarray(targets + targets_val, dtype=np.int64)
        if not self.files:
            raise self._error_path("DataPath", self.path / "train", None)
        ids = ordered(np.arange(n_train), self.random_partitioning, self.seed, 3)
        learn_ids, _, rest = split_fractions(ids, learn, 0.0)
        val_ids = np.arange(n_train, len(self.files), dtype=np.int64)
        test_ids = np.concatenate([rest, val_ids]) if use_val_for_test else rest
        self.partitions = {"Learn": learn_ids, "Validation": val_ids, "Test": test_ids}

    def _validation(self, shift: int, n_classes: int) -> tuple[list, list]:
        val_dir = self.path / "val"
        listing = self.path / "val.txt"
        if not val_dir.is_dir():
            return [], []
        if not listing.is_file():
            raise UserError(f"val/ needs its label list {listing} (lines: <file> <label index>)",
                            file=val_dir)
        files, targets = [], []
        for n, line in enumerate(listing.read_text(errors="replace").splitlines(), 1):
            words = line.split()
            if not words:
                continue
            try:
                label = int(words[1])
            except (IndexError, ValueError):
                raise UserError("expected '<file> <label index>'", file=listing, line=n) from None
            if not 0 <= label < n_classes:
                raise UserError(f"label index {label} outside 0..{n_classes - 1}", file=listing,
                                line=n)
            files.append(val_dir / words[0])
            targets.append(label + shift)
        return files, targets
