"""MNIST_IDX_Database: train-* (Learn + Validation) and t10k-* (Test) IDX files."""

from __future__ import annotations

import numpy as np
import torch

from n2q.data.databases.base import Database, register_database
from n2q.data.databases.idx import find_idx, read_idx
from n2q.data.partition import ordered, read_fraction, split_fractions
from n2q.data.root import dataset_path
from n2q.errors import UserError

_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@register_database("MNIST_IDX_Database")
class MNISTDatabase(Database):
    KEYS = ("DataPath", "Validation")
    INSTALL = "mnist"

    def load_index(self) -> None:
        sec = self.section
        self.path = dataset_path(sec, "DataPath", "mnist")
        validation = read_fraction(sec, "Validation", 0.0)
        images, targets, self._names = [], [], []
        for img_name, lbl_name in _FILES.values():
            img_path = find_idx(self.path, img_name)
            lbl_path = find_idx(self.path, lbl_name)
            if img_path is None or lbl_path is None:
                missing = img_name if img_path is None else lbl_name
                # the installer knows both IDX data sets by their folder names
                install = "fashion-mnist" if self.path.name == "fashion-mnist" else self.INSTALL
                raise self._error_path("DataPath", self.path / missing, install)
            imgs = read_idx(img_path, 3)
            lbls = read_idx(lbl_path, 1)
            if len(imgs) != len(lbls):
                raise UserError(f"{len(lbls)} labels for {len(imgs)} images in "
                                f"{img_path.name}", file=lbl_path)
            if lbls.dtype.kind not in "iu" or (lbls.size and (lbls.min() < 0
                                                             or lbls.max() > 9)):
                raise UserError("labels outside 0..9: not an MNIST label file", file=lbl_path)
            if images and imgs.shape[1:] != images[0].shape[1:]:
                size, learn = (f"{d[1]}x{d[2]}" for d in (imgs.shape, images[0].shape))
                raise UserError(f"images of {size} pixels, the learn images "
                                f"({_FILES['train'][0]}) are {learn}: both files must come "
                                "from the same data set", file=img_path)
            images.append(imgs)
            targets.append(lbls.astype(np.int64))
            # N2D2 names an IDX stimulus after its file and index
            self._names.append((len(imgs), str(self.path / img_name)))
        self.images = torch.from_numpy(np.concatenate(images)).unsqueeze(1)  # uint8 [N, 1, H, W]
        self.targets = np.concatenate(targets)
        self.labels = [str(i) for i in range(10)]
        n_train = len(images[0])
        train = ordered(np.arange(n_train), self.random_partitioning, self.seed, 1)
        learn, val, _ = split_fractions(train, 1.0 - validation, validation)
        self.partitions = {"Learn": learn, "Validation": val,
                           "Test": np.arange(n_train, len(self.targets), dtype=np.int64)}

    def load(self, stimulus: int) -> torch.Tensor:
        return self.images[stimulus]

    def batch(self) -> torch.Tensor:
        return self.images

    def name(self, stimulus: int) -> str:
        count, path = self._names[0]
        if stimulus >= count:
            stimulus -= count
            path = self._names[1][1]
        return f"{path}[{stimulus:05d}].pgm"
