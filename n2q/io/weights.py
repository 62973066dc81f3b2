"""Weights folders in N2D2's ``.syntxt`` format (spec/weights.md): save and load.

One :class:`CellFormat` per cell kind knows which files hold a cell's parameters and in which
layout (``CELL_FORMATS``, keyed by ``Cell.type``, in cell_formats.py). Quantizers (and any
cell or module exposing the same protocol, e.g. fused cells) contribute their own files
through ``files(stem) -> {file name: tensor}`` / ``load_file(name, tensor)``.

Saving writes everything into ``<folder>.tmp-<pid>`` and renames it at the end (atomic.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2q.errors import UserError, notice
from n2q.io.atomic import atomic_folder, refuse_half_written
from n2q.io.cell_formats import (  # noqa: F401 (ConvLayout, conv_layout: re-exported)
    CELL_FORMATS,
    ConvLayout,
    LoadContext,
    conv_layout,
    to_numpy,
)
from n2q.io.syntxt import read_values, row_chunks, safe_name, write_text


def _has_quantizer(cell: Any) -> bool:
    return getattr(cell, "weight_quantizer", None) is not None


def quantized_weight(cell: Any) -> torch.Tensor:
    """The weight as inference uses it: in eval mode (SLB one-hot), without autograd. A
    weight quantizer's ``quantize`` is pure in eval mode (no first-batch initialization, no
    range tracking), so the real quantizer is used."""
    training = cell.training
    try:
        cell.eval()
        with torch.no_grad():
            return cell.quantized_weight().detach()
    finally:
        cell.train(training)


# ---------------------------------------------------------------------------------------------
# Parameter files of quantizers and other modules (``files`` / ``load_file`` protocol)


def _file_owners(cell: Any) -> list[Any]:
    """Objects of the cell that write their own files: its quantizers, and the cell itself if
    it implements the protocol (fused cells' scaling / clip)."""
    owners = [getattr(cell, "weight_quantizer", None), getattr(cell, "act_quantizer", None)]
    if callable(getattr(cell, "files", None)) and callable(getattr(cell, "load_file", None)):
        owners.append(cell)
    return [owner for owner in owners if owner is not None and hasattr(owner, "files")]


def _tensor_rows(tensor: torch.Tensor) -> tuple[np.ndarray, list[int]]:
    """Layout of a parameter file: 0-d / 1-d one value per line, N-d one line per row of the
    last axis (SLB logits: R+1 per weight, SimQAT min max per channel)."""
    values = to_numpy(tensor)
    if values.ndim <= 1:
        return values.reshape(-1), [1] * values.size
    width = values.shape[-1]
    return values.reshape(-1), [width] * (values.size // max(width, 1))


def _save_owner_files(owner: Any, stem: str, folder: Path) -> None:
    for name, tensor in owner.files(stem).items():
        values, rows = _tensor_rows(torch.as_tensor(tensor))
        blank = not set(rows) <= {1}  # one value per line: no trailing blank
        write_text(folder / name, row_chunks(values, rows, blank=blank))


def _load_owner_files(owner: Any, cell_name: str, stem: str, context: LoadContext) -> None:
    for name, template in owner.files(stem).items():
        path = context.folder / name
        if not path.exists():
            context.missing_file(cell_name, path, f"{name} (quantizer parameter)")
            continue
        template = torch.as_tensor(template)
        _, rows = _tensor_rows(template)
        values = read_values(path, rows, "row")
        tensor = torch.from_numpy(values).reshape(template.shape).to(template.dtype)
        try:
            owner.load_file(name, tensor)
        except UserError as error:  # the quantizer knows what is wrong, we know the file
            if error.file is None:
                raise UserError(error.message, file=path, line=1) from None
            raise
        context.loaded.append(name)


# ---------------------------------------------------------------------------------------------
# Public API


@dataclass
class LoadResult:
    """What ``load_weights`` did: file names read, and files missing (notices)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _cells(net: Any) -> Iterable[tuple[str, Any]]:
    cells = getattr(net, "cells", net)
    return cells.items()


def cell_stems(net: Any) -> dict[str, str]:
    """Cell name -> file stem (impossible characters -> ``_``); two cells with one stem are an
    error since their files would overwrite each other."""
    stems: dict[str, str] = {}
    owner_of: dict[str, str] = {}
    for name, cell in _cells(net):
        stem = safe_name(name)
        if stem in owner_of:
            error = UserError(
                f"cells '{owner_of[stem]}' and '{name}' would share the weights files "
                f"{stem}_*.syntxt: rename one of them"
            )
            section = getattr(cell, "section", None)
            raise section.error(None, error.message) if hasattr(section, "error") else error
        owner_of[stem] = name
        stems[name] = stem
    return stems


def save_weights(net: Any, folder: str | Path, *, plots: bool = True) -> Path:
    """Write every cell's parameters to ``folder`` (replaced atomically); returns the folder.

    Per quantized cell also ``<cell>_weights.distrib.png`` and ``<cell>_weights_quant
    .distrib.png`` (``plots=False`` skips them, e.g. for benchmarks).
    """
    folder = Path(folder)
    stems = cell_stems(net)
    with atomic_folder(folder) as tmp:
        for name, cell in _cells(net):
            stem = stems[name]
            quantized = quantized_weight(cell) if _has_quantizer(cell) else None
            cell_format = CELL_FORMATS.get(getattr(cell, "type", ""))
            if cell_format is not None:
                cell_format.save(cell, stem, tmp, quantized)
            for owner in _file_owners(cell):
                _save_owner_files(owner, stem, tmp)
            if plots and quantized is not None:
                _save_distributions(cell, stem, tmp, quantized)
    return folder


def _connected_values(cell: Any, weight: torch.Tensor) -> np.ndarray:
    values = to_numpy(weight)
    mask = getattr(cell, "mask", None)
    return values[mask.detach().cpu().numpy()] if mask is not None else values.reshape(-1)


def _save_distributions(cell: Any, stem: str, folder: Path, quantized: torch.Tensor) -> None:
    from n2q.io.plots import plot_distribution

    plot_distribution(folder / f"{stem}_weights.distrib.png",
                      _connected_values(cell, cell.weight), f"{cell.name} weights")
    plot_distribution(folder / f"{stem}_weights_quant.distrib.png",
                      _connected_values(cell, quantized), f"{cell.name} quantized weights")


def load_weights(
    net: Any,
    folder: str | Path,
    *,
    ignore_missing: bool = True,
    strict_missing: bool | None = None,
) -> LoadResult:
    """Load a weights folder (N2D2's or n2q's) into ``net``.

    A missing file is a notice and the cell keeps its values (``ignore_missing=False``, or the
    older spelling ``strict_missing=True``, makes it an error). Malformed files raise
    :class:`UserError` naming the file and line. ``/dev/null`` loads nothing. Quantizer
    parameters go through ``load_file`` so that no first-batch initialization overwrites them.
    """
    if strict_missing is not None:
        ignore_missing = not strict_missing
    result = LoadResult()
    if str(folder) == os.devnull:
        return result
    folder = Path(folder)
    refuse_half_written(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "not found"
        raise UserError(f"weights folder {what}: {folder}")
    context = LoadContext(folder, ignore_missing, result.loaded, result.missing)
    stems = cell_stems(net)
    expected: set[str] = set()
    for name, cell in _cells(net):
        stem = stems[name]
        cell_format = CELL_FORMATS.get(getattr(cell, "type", ""))
        if cell_format is not None:
            expected.update(cell_format.file_names(cell, stem))
            cell_format.load(cell, stem, context)
        for owner in _file_owners(cell):
            expected.update(owner.files(stem))
            _load_owner_files(owner, name, stem, context)
    _notice_unknown_files(folder, expected)
    return result


def _notice_unknown_files(folder: Path, expected: set[str]) -> None:
    """Files for no cell usually mean renamed cells: say so instead of silently ignoring."""
    unknown = sorted(p.name for p in folder.glob("*.syntxt") if p.name not in expected)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5
                                           else "")
        notice(f"{folder}: files matching no cell of the network, ignored: {shown}")
