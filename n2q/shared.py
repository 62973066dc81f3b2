"""A reference that deep copies share, for any package (cells hold their INI section in it,
quantizers the cell they fold)."""

from __future__ import annotations

from typing import Any


class Shared:
    """A reference that deep copies share: a cell's INI section (a description, not state)
    is not duplicated, with the whole Config behind it, by ``copy.deepcopy(cell)``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict) -> Shared:
        return self
