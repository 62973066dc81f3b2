"""Data base registry: ``[database] Type=`` name -> class (one module per data base)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from n2q.data.databases.base import DATABASES, Database, register_database

if TYPE_CHECKING:
    from n2q.config import Config

# modules that register a data base when imported
_MODULES = ("mnist", "cifar10", "cifar100", "ilsvrc2012", "dir")


def load_all() -> dict[str, type[Database]]:
    for name in _MODULES:
        importlib.import_module(f"n2q.data.databases.{name}")
    return DATABASES


def make_database(cfg: Config, seed: int) -> Database:
    """The ``[database]`` of ``cfg``, loaded and partitioned."""
    sec = cfg["database"]
    types = load_all()
    kind = sec.enum("Type", sorted(types))
    return types[kind](sec, seed)


__all__ = ["DATABASES", "Database", "load_all", "make_database", "register_database"]
