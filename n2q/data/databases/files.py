"""Data bases made of image files: decoded lazily (in the loader's workers) or kept in memory."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from n2q.data.databases.base import Database
from n2q.data.images import decode_image


class FileDatabase(Database):
    files: list[Path]

    def keep_in_memory(self) -> None:
        """Decode every image once (LoadInMemory=1); uniform sizes give a single tensor."""
        self._memory = [decode_image(f) for f in tqdm(self.files, desc="Loading images",
                                                      unit="img", leave=False)]
        shapes = {(tuple(x.shape), x.dtype) for x in self._memory}
        self._batch = torch.stack(self._memory) if len(shapes) == 1 else None

    def load(self, stimulus: int) -> torch.Tensor:
        memory = getattr(self, "_memory", None)
        if memory is not None:
            return memory[stimulus]
        return decode_image(self.files[stimulus])

    def batch(self) -> torch.Tensor | None:
        return getattr(self, "_batch", None)

    def name(self, stimulus: int) -> str:
        return str(self.files[stimulus])
