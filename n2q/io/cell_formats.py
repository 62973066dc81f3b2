"""How each cell kind lays its parameters out in a weights folder (spec/weights.md's table).

One :class:`CellFormat` per cell kind knows which files hold a cell's parameters and in which
layout (``CELL_FORMATS``, keyed by ``Cell.type``); n2q.io.weights walks the cells and calls
them. Conv: N2D2's full connection-matrix view; Fc: flattened C, H, W; BatchNorm: four
one-value-per-line files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2q.errors import UserError, notice
from n2q.io.syntxt import column_chunks, read_values, row_chunks, write_text

# ---------------------------------------------------------------------------------------------
# Cell access helpers (the Cell contract of ARCHITECTURE.md)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """float64 parameters stay float64 (written with 17 digits); all others as float32."""
    dtype = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    return tensor.detach().to("cpu", dtype).numpy()


def _assign(param: torch.Tensor, values: np.ndarray) -> None:
    with torch.no_grad():
        source = torch.from_numpy(np.ascontiguousarray(values)).reshape(param.shape)
        param.copy_(source.to(param.dtype))


def _export_format(cell: Any, choices: list[str]) -> str:
    """``WeightsExportFormat`` of the cell (attribute set by the builder, else its section)."""
    value = getattr(cell, "weights_export_format", None)
    if value is None:
        section = getattr(cell, "section", None)
        if section is not None and hasattr(section, "enum"):
            value = section.enum("WeightsExportFormat", choices, choices[0])
    return value or choices[0]


# ---------------------------------------------------------------------------------------------
# Conv: N2D2 sees a full [input channel x output] connection matrix (Mapping); PyTorch holds
# [O, C/groups, kH, kW] (+ a mask for sparse mappings). The "full" view [O, C, K] (K = kH*kW)
# with a connectivity matrix [O, C] covers dense, grouped, depthwise and sparse alike.


@dataclass
class ConvLayout:
    """Where the weights of a Conv cell go in N2D2's full-channel view."""

    shape: tuple[int, int, int, int]  # [O, Cg, kH, kW] as PyTorch holds it
    channel: np.ndarray  # [O, Cg] int: global input channel of each local channel
    connected: np.ndarray  # [O, C] bool: N2D2's mapping, transposed (output-major)

    @property
    def kernel_size(self) -> int:
        return self.shape[2] * self.shape[3]

    def to_full(self, weight: np.ndarray) -> np.ndarray:
        """[O, Cg, kH, kW] -> [O, C, K], zeros where a channel is not connected."""
        out, local, _, _ = self.shape
        if self.channel.shape[1] == self.connected.shape[1]:  # groups == 1: already full
            return weight.reshape(out, local, self.kernel_size)
        full = np.zeros((out, self.connected.shape[1], self.kernel_size), dtype=weight.dtype)
        full[np.arange(out)[:, None], self.channel] = weight.reshape(out, local, -1)
        return full

    def from_full(self, full: np.ndarray) -> np.ndarray:
        """[O, C, K] -> [O, Cg, kH, kW]."""
        out = self.shape[0]
        return full[np.arange(out)[:, None], self.channel].reshape(self.shape)


def conv_layout(cell: Any) -> ConvLayout:
    shape = tuple(int(n) for n in cell.weight.shape)
    out, local = shape[0], shape[1]
    groups = int(getattr(cell, "groups", 1) or 1)
    channels = local * groups
    group_of_output = np.arange(out) // max(out // groups, 1)
    channel = group_of_output[:, None] * local + np.arange(local)[None, :]
    mask = getattr(cell, "mask", None)
    if mask is None:
        local_connected = np.ones((out, local), dtype=bool)
    else:
        local_connected = mask.detach().cpu().numpy().reshape(out, local, -1).any(axis=-1)
    connected = np.zeros((out, channels), dtype=bool)
    connected[np.arange(out)[:, None], channel] = local_connected
    return ConvLayout(shape, channel, connected)  # type: ignore[arg-type]


def _conv_text(cell: Any, weight: np.ndarray) -> Iterator[str]:
    """Text of a Conv weights file for `weight` [O, Cg, kH, kW] (float or quantized)."""
    layout = conv_layout(cell)
    full = layout.to_full(weight)
    k = layout.kernel_size
    if _export_format(cell, ["OCHW", "HWCO"]) == "HWCO":
        # One line per kernel position; on it every connected (channel, output) pair,
        # channel-major: full[O, C, K] -> [K, C, O] selected by connected^T [C, O].
        values = full.transpose(2, 1, 0)[:, layout.connected.T]
        return row_chunks(values, [values.shape[1]] * k)
    values = full[layout.connected]  # [connections, K], output-major then channel
    return row_chunks(values, layout.connected.sum(axis=1) * k)


def _conv_rows(cell: Any, layout: ConvLayout, with_bias: bool) -> tuple[list[int], str]:
    k = layout.kernel_size
    if _export_format(cell, ["OCHW", "HWCO"]) == "HWCO":
        rows = [int(layout.connected.sum())] * k
        return rows + ([1] * layout.shape[0] if with_bias else []), "kernel position"
    rows = (layout.connected.sum(axis=1) * k + (1 if with_bias else 0)).tolist()
    return rows, "output channel"


def _conv_values_to_weight(cell: Any, layout: ConvLayout, values: np.ndarray) -> np.ndarray:
    out, channels = layout.connected.shape
    k = layout.kernel_size
    full = np.zeros((out, channels, k), dtype=values.dtype)
    if _export_format(cell, ["OCHW", "HWCO"]) == "HWCO":
        by_position = np.zeros((k, channels, out), dtype=values.dtype)
        by_position[:, layout.connected.T] = values.reshape(k, -1)
        full = np.ascontiguousarray(by_position.transpose(2, 1, 0))
    else:
        full[layout.connected] = values.reshape(-1, k)
    return layout.from_full(full)


# ---------------------------------------------------------------------------------------------
# Cell formats


@dataclass
class LoadContext:
    """State shared by the loaders of one ``load_weights`` call."""

    folder: Path
    ignore_missing: bool
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def missing_file(self, cell_name: str, path: Path, what: str) -> None:
        self.missing.append(path.name)
        if not self.ignore_missing:
            raise UserError(
                f"no {what} for {cell_name} ({path.name} missing); "
                "use -w-ignore to keep the initialization of cells without a file",
                file=self.folder,
            )
        notice(f"no {what} for {cell_name} in {self.folder}, keeping its initialization")


class CellFormat:
    """Files of one cell kind. Subclasses implement the three methods."""

    def file_names(self, cell: Any, stem: str) -> list[str]:
        raise NotImplementedError

    def save(self, cell: Any, stem: str, folder: Path,
             quantized: torch.Tensor | None = None) -> None:
        """Write the cell's files; ``quantized`` = its quantized weight (quantized cells)."""
        raise NotImplementedError

    def load(self, cell: Any, stem: str, context: LoadContext) -> None:
        raise NotImplementedError


def _load_bias(cell: Any, path: Path) -> None:
    out = int(cell.bias.shape[0])
    if not path.exists():
        raise UserError(
            f"missing biases file for {cell.name}, which has biases (NoBias=0): expected "
            f"{path.name} with {out} values, one per line (or set NoBias=1)",
            file=path.parent,
        )
    _assign(cell.bias, read_values(path, [1] * out, "output"))


def _stored(cell: Any) -> torch.Tensor:
    """The weight a folder saves: the quantizer's ``stored_weight`` (SLB: one-hot), else the
    float weight."""
    stored = getattr(getattr(cell, "weight_quantizer", None), "stored_weight", None)
    weight = stored(cell.weight) if stored is not None else None
    return cell.weight if weight is None else weight


class WeightsAndBiasesFormat(CellFormat):
    """Conv and Fc: ``<cell>_weights.syntxt`` + ``<cell>_biases.syntxt`` (or ``<cell>.syntxt``)."""

    quant_suffix = "_quant_weights.syntxt"

    # `text(cell, weight)` -> file text (blocks); `rows(cell, with_bias)` -> (row lengths,
    # row name); `unpack(cell, values)` -> weight array shaped like cell.weight.
    def text(self, cell: Any, weight: np.ndarray) -> Iterator[str]:
        raise NotImplementedError

    def rows(self, cell: Any, with_bias: bool) -> tuple[list[int], str]:
        raise NotImplementedError

    def unpack(self, cell: Any, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def file_names(self, cell: Any, stem: str) -> list[str]:
        names = [f"{stem}_weights.syntxt", f"{stem}.syntxt"]
        if getattr(cell, "bias", None) is not None:
            names.append(f"{stem}_biases.syntxt")
        return names + [stem + self.quant_suffix]  # inspection copy, never read back

    def save(self, cell: Any, stem: str, folder: Path,
             quantized: torch.Tensor | None = None) -> None:
        write_text(folder / f"{stem}_weights.syntxt", self.text(cell, to_numpy(_stored(cell))))
        if getattr(cell, "bias", None) is not None:
            write_text(folder / f"{stem}_biases.syntxt", column_chunks(to_numpy(cell.bias)))
        if quantized is not None:
            write_text(folder / (stem + self.quant_suffix), self.text(cell, to_numpy(quantized)))

    def load(self, cell: Any, stem: str, context: LoadContext) -> None:
        weights = context.folder / f"{stem}_weights.syntxt"
        single = context.folder / f"{stem}.syntxt"
        has_bias = getattr(cell, "bias", None) is not None
        if weights.exists():
            rows, what = self.rows(cell, with_bias=False)
            _assign(cell.weight, self.unpack(cell, read_values(weights, rows, what)))
            if has_bias:
                _load_bias(cell, context.folder / f"{stem}_biases.syntxt")
            context.loaded.append(weights.name)
        elif single.exists():
            self._load_single(cell, single, has_bias)
            context.loaded.append(single.name)
        else:
            context.missing_file(cell.name, weights, "weights")

    def _load_single(self, cell: Any, path: Path, has_bias: bool) -> None:
        """``<cell>.syntxt``: per output (row), its weights followed by its bias."""
        rows, what = self.rows(cell, with_bias=has_bias)
        values = read_values(path, rows, what)
        if has_bias:
            out = int(cell.bias.shape[0])
            if len(rows) == out:  # bias at the end of each output's row
                bias_at = np.cumsum(rows) - 1
            else:  # transposed layouts: all weights, then the biases
                bias_at = np.arange(values.size - out, values.size)
            keep = np.ones(values.size, dtype=bool)
            keep[bias_at] = False
            _assign(cell.bias, values[bias_at])
            values = values[keep]
        _assign(cell.weight, self.unpack(cell, values))


class ConvFormat(WeightsAndBiasesFormat):
    quant_suffix = "_quant_weights.syntxt"

    def text(self, cell: Any, weight: np.ndarray) -> Iterator[str]:
        return _conv_text(cell, weight)

    def rows(self, cell: Any, with_bias: bool) -> tuple[list[int], str]:
        return _conv_rows(cell, conv_layout(cell), with_bias)

    def unpack(self, cell: Any, values: np.ndarray) -> np.ndarray:
        return _conv_values_to_weight(cell, conv_layout(cell), values)


class FcFormat(WeightsAndBiasesFormat):
    """Fc: one line per output, inputs flattened C, H, W; ``WeightsExportFormat=CO`` transposes."""

    quant_suffix = "_quant_weights_quant.syntxt"

    def _transposed(self, cell: Any) -> bool:
        return _export_format(cell, ["OC", "CO"]) == "CO"

    def text(self, cell: Any, weight: np.ndarray) -> Iterator[str]:
        matrix = weight.reshape(weight.shape[0], -1)  # [O, C*H*W]
        if self._transposed(cell):
            matrix = matrix.T
        return row_chunks(matrix, [matrix.shape[1]] * matrix.shape[0])

    def rows(self, cell: Any, with_bias: bool) -> tuple[list[int], str]:
        out = int(cell.weight.shape[0])
        inputs = int(cell.weight.numel()) // out
        if self._transposed(cell):
            return [out] * inputs + ([1] * out if with_bias else []), "input"
        return [inputs + (1 if with_bias else 0)] * out, "output"

    def unpack(self, cell: Any, values: np.ndarray) -> np.ndarray:
        out = int(cell.weight.shape[0])
        if self._transposed(cell):
            return values.reshape(-1, out).T.reshape(tuple(cell.weight.shape))
        return values.reshape(tuple(cell.weight.shape))


class BatchNormFormat(CellFormat):
    """``_scales``, ``_biases``, ``_means``, ``_variances``: one value per line each."""

    FILES = (("scales", "weight"), ("biases", "bias"), ("means", "running_mean"),
             ("variances", "running_var"))

    def _present(self, cell: Any) -> list[tuple[str, str]]:
        return [(kind, attr) for kind, attr in self.FILES if getattr(cell, attr, None) is not None]

    def file_names(self, cell: Any, stem: str) -> list[str]:
        return [f"{stem}_{kind}.syntxt" for kind, _ in self._present(cell)]

    def save(self, cell: Any, stem: str, folder: Path,
             quantized: torch.Tensor | None = None) -> None:
        for kind, attr in self._present(cell):
            values = to_numpy(getattr(cell, attr))
            write_text(folder / f"{stem}_{kind}.syntxt", column_chunks(values))

    def load(self, cell: Any, stem: str, context: LoadContext) -> None:
        present = self._present(cell)
        paths = [context.folder / f"{stem}_{kind}.syntxt" for kind, _ in present]
        if not paths:
            return
        if not any(path.exists() for path in paths):
            context.missing_file(cell.name, paths[0], "BatchNorm parameters")
            return
        for (kind, attr), path in zip(present, paths, strict=True):
            if not path.exists():
                raise UserError(
                    f"missing {path.name}: the BatchNorm cell {cell.name} needs its {kind} "
                    f"({getattr(cell, attr).numel()} values, one per line)",
                    file=context.folder,
                )
            tensor = getattr(cell, attr)
            _assign(tensor, read_values(path, [1] * tensor.numel(), "channel"))
            context.loaded.append(path.name)


CELL_FORMATS: dict[str, CellFormat] = {
    "Conv": ConvFormat(),
    "Fc": FcFormat(),
    "BatchNorm": BatchNormFormat(),
}
