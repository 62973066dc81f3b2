"""DIR_Database: images in a folder tree, one sub-folder per label.

Files are collected down to ``Depth`` folder levels below DataPath (0: DataPath only). A file's
label is LabelName joined (with "/") to the names of its first ``LabelDepth`` folders
(LabelDepth=0: LabelName for every file; -1: no label, DefaultLabel when set, else -1).
Labels are numbered in sorted name order.

Partitions, with PerLabelPartitioning=1 (default): per label, nLearn = round_half_up(n*Learn),
nValidation = round_half_up(n*Validation), nTest = round_half_up(n*Test) (Test defaults to the
rest). With EquivLabelPartitioning=1 the fractions apply to the size of the smallest class, so
every label contributes the same counts, and each label's leftovers go to Test. With
PerLabelPartitioning=0, Learn / Validation / Test are absolute counts over all files (Test
defaults to the rest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from n2q.data.databases.base import register_database
from n2q.data.databases.files import FileDatabase
from n2q.data.images import IMAGE_EXTENSIONS
from n2q.data.partition import ordered, read_fraction, round_half_up
from n2q.data.root import dataset_path


@register_database("DIR_Database")
class DIRDatabase(FileDatabase):
    KEYS = ("DataPath", "Depth", "LabelName", "LabelDepth", "PerLabelPartitioning",
            "EquivLabelPartitioning", "Learn", "Validation", "Test", "ValidExtensions",
            "LoadInMemory")

    def load_index(self) -> None:
        sec = self.section
        self.path = dataset_path(sec, "DataPath", None) if "DataPath" in sec else None
        if self.path is None:
            raise sec.error(None, "missing key DataPath: the folder holding one sub-folder per "
                            "label")
        if not self.path.is_dir():
            raise self._error_path("DataPath", self.path, None)
        depth = sec.int("Depth", 1)
        label_depth = sec.int("LabelDepth", 1)
        label_name = sec.str("LabelName", "")
        if label_depth < -1:
            raise sec.error("LabelDepth", f"{label_depth}: use -1 (no label), 0 or more")
        extensions = self._extensions(sec)
        found = sorted(self._walk(self.path, depth, extensions))
        if not found:
            raise sec.error("DataPath", f"no image ({', '.join(extensions)}) in {self.path} "
                            f"down to Depth={depth}")
        self.files = [self.path / rel for rel in found]
        names = [self._label(rel, label_depth, label_name) for rel in found]
        self.labels = sorted({n for n in names if n is not None})
        number = {n: i for i, n in enumerate(self.labels)}
        self.targets = np.asarray([number[n] if n is not None else -1 for n in names],
                                  dtype=np.int64)
        self._partition(sec)
        if sec.bool("LoadInMemory", False):
            self.keep_in_memory()

    @staticmethod
    def _extensions(sec) -> list[str]:
        words = sec.strs("ValidExtensions", None)
        if words is None:
            return list(IMAGE_EXTENSIONS)
        return ["." + w.lower().lstrip(".") for w in words]

    @staticmethod
    def _walk(root: Path, depth: int, extensions: list[str]) -> list[Path]:
        out, level = [], [root]
        for d in range(depth + 1 if depth >= 0 else 1 << 30):
            nxt = []
            for folder in level:
                for p in folder.iterdir():
                    if p.is_dir():
                        nxt.append(p)
                    elif p.suffix.lower() in extensions:
                        out.append(p.relative_to(root))
            if not nxt or d == depth:
                break
            level = nxt
        return out

    def _label(self, rel: Path, label_depth: int, label_name: str) -> str | None:
        if label_depth < 0:
            return self.default_label
        parts = [label_name] if label_name else []
        parts += list(rel.parts[:-1][:label_depth])
        return "/".join(parts) if parts else (self.default_label or "")

    def _partition(self, sec) -> None:
        per_label = sec.bool("PerLabelPartitioning", True)
        rand = self.random_partitioning
        if not per_label:
            self._absolute(sec, ordered(np.arange(len(self.files)), rand, self.seed, 4))
            return
        note = " (PerLabelPartitioning=1)"
        learn = read_fraction(sec, "Learn", note=note)
        validation = read_fraction(sec, "Validation", 0.0, note)
        test = read_fraction(sec, "Test", max(0.0, 1.0 - learn - validation), note)
        if learn + validation + test > 1.0 + 1e-9:
            raise sec.error("Test", f"Learn + Validation + Test = {learn + validation + test} "
                            "exceeds 1")
        equiv = sec.bool("EquivLabelPartitioning", True)
        groups = [np.flatnonzero(self.targets == k) for k in np.unique(self.targets)]
        smallest = min(len(g) for g in groups)
        parts: dict[str, list] = {"Learn": [], "Validation": [], "Test": []}
        for k, group in enumerate(groups):
            ids = ordered(group, rand, self.seed, 100 + k)
            n = smallest if equiv else len(ids)
            n_learn = round_half_up(n * learn)
            n_val = min(round_half_up(n * validation), n - n_learn)
            n_test = min(round_half_up(n * test), n - n_learn - n_val)
            if equiv:
                n_test = len(ids) - n_learn - n_val  # the leftovers of bigger classes too
            parts["Learn"].append(ids[:n_learn])
            parts["Validation"].append(ids[n_learn:n_learn + n_val])
            parts["Test"].append(ids[n_learn + n_val:n_learn + n_val + n_test])
        self.partitions = {p: np.sort(np.concatenate(v)) if not rand else np.concatenate(v)
                           for p, v in parts.items()}

    def _absolute(self, sec, ids: np.ndarray) -> None:
        total = len(ids)
        n_learn = sec.int("Learn")
        n_val = sec.int("Validation", 0)
        n_test = sec.int("Test", max(0, total - n_learn - n_val))
        for key, v in (("Learn", n_learn), ("Validation", n_val), ("Test", n_test)):
            if v < 0:
                raise sec.error(key, f"{v}: with PerLabelPartitioning=0 this is a count of "
                                "stimuli, >= 0")
        if n_learn + n_val + n_test > total:
            raise sec.error("Learn", f"Learn + Validation + Test = {n_learn + n_val + n_test} "
                            f"stimuli but {self.path} holds {total} (PerLabelPartitioning=0 "
                            "takes counts)")
        self.partitions = {"Learn": ids[:n_learn], "Validation": ids[n_learn:n_learn + n_val],
                           "Test": ids[n_learn + n_val:n_learn + n_val + n_test]}
