"""Data bases, transformations and the stimuli provider (see ARCHITECTURE.md, data).

Importing this package does not import torch: ``make_provider`` imports the provider lazily so
that ``import n2q.cli`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from n2q.data.provider import StimuliProvider


def make_provider(cfg: Any, seed: int, name: str | None = None) -> StimuliProvider:
    """Build the data base and the provider ``[name]`` of ``cfg`` (default: ``[sp]``, or
    ``[env]`` when there is no ``[sp]``; see provider.py)."""
    from n2q.data.provider import make_provider as _make

    return _make(cfg, seed, name)


__all__ = ["make_provider"]
