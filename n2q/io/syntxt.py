"""N2D2's ``.syntxt`` text format: blank-separated numbers, one logical row per line.

Writing formats whole arrays at once like ``%.9g`` (numformat.py: vectorised, no Python loop
per value), which round-trips any float32 exactly. Reading parses the whole file in C
(``np.fromstring``) and only walks it line by line to explain a mismatch, so that a ResNet-18
folder (11.7 M values) saves and loads in a few seconds.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from n2q.errors import UserError
from n2q.io.numformat import FIELD, format_fields, text_of

# 9 significant digits identify every float32 uniquely (N2D2 writes 6 or 10); float64
# parameters (DefaultDataType=Float64) need 17.
VALUE_FORMAT = "%.9g"
FLOAT64_FORMAT = "%.17g"

# Characters that cannot appear in a file name on common file systems, and control characters.
_UNSAFE = re.compile(r'[\\/:*?"<>|\s\x00-\x1f]')


def safe_name(name: str) -> str:
    """A cell name usable as a file name stem: impossible characters replaced by ``_``."""
    safe = _UNSAFE.sub("_", name)
    return "_" if safe in ("", ".", "..") else safe


# Values formatted per block: bounds the memory of one file's text being built (VGG16's fc6
# holds 103 M weights) while keeping numpy's per-call overhead negligible.
CHUNK_VALUES = 1 << 20


def row_chunks(values: np.ndarray, row_lengths: Sequence[int] | np.ndarray, *,
               blank: bool = True) -> Iterator[str]:
    """Text of ``values`` (flat) cut into lines of ``row_lengths`` values, in blocks of whole
    lines of about CHUNK_VALUES values.

    N2D2's layout: each value is followed by a blank (``blank=False``: not) and each line ends
    with ``\\n`` (``"0.5 -1 \\n"``). float64 values are written with 17 significant digits,
    any other type with 9 (float32 exact).
    """
    array = np.asarray(values)
    flat = array.reshape(-1)
    lengths = np.asarray(row_lengths, dtype=np.int64).reshape(-1)
    if int(lengths.sum()) != flat.size:
        raise ValueError(f"format_rows: {flat.size} values for rows totalling {lengths.sum()}")
    ends = np.cumsum(lengths)  # index after each row's last value
    first = 0
    while first < lengths.size:
        start = int(ends[first] - lengths[first])
        last = max(int(np.searchsorted(ends, start + CHUNK_VALUES, side="right")), first + 1)
        yield _text_block(flat[start:int(ends[last - 1])], lengths[first:last], blank)
        first = last


def _text_block(flat: np.ndarray, lengths: np.ndarray, blank: bool) -> str:
    after = " " if blank else ""
    if flat.dtype == np.float64 or (lengths == 0).any():  # rare cases: Python formatting
        value = (FLOAT64_FORMAT if flat.dtype == np.float64 else VALUE_FORMAT) + after
        if (lengths == lengths[0]).all():
            template = (value * int(lengths[0]) + "\n") * lengths.size
        else:
            template = "".join(value * int(n) + "\n" for n in lengths)
        return template % tuple(flat.astype(np.float64).tolist())
    fields = format_fields(flat, extra=2)  # value, blank, newline at the end of a row
    if blank:
        fields[:, FIELD] = ord(" ")
    fields[np.cumsum(lengths) - 1, FIELD + 1] = ord("\n")
    return text_of(fields)


def format_rows(values: np.ndarray, row_lengths: Sequence[int] | np.ndarray) -> str:
    """The whole text of :func:`row_chunks` (lines of values, each followed by a blank)."""
    return "".join(row_chunks(values, row_lengths))


def column_chunks(values: np.ndarray) -> Iterator[str]:
    """One value per line, without trailing blank (N2D2's biases / BatchNorm files)."""
    array = np.asarray(values).reshape(-1)
    return row_chunks(array, np.ones(array.size, dtype=np.int64), blank=False)


def format_column(values: np.ndarray) -> str:
    return "".join(column_chunks(values))


def write_text(path: Path, text: str | Iterable[str]) -> None:
    """Write a text, or the blocks of a text one after the other."""
    with open(path, "w", encoding="ascii", newline="\n") as stream:
        if isinstance(text, str):
            stream.write(text)
        else:
            for block in text:
                stream.write(block)


def read_values(path: Path, row_lengths: Sequence[int], what: str) -> np.ndarray:
    """The numbers of ``path`` (float64: the caller casts to its parameter's type), checked
    against the expected layout.

    ``row_lengths`` is the expected number of values on each line and ``what`` describes a row
    for error messages (``"output channel"``). As N2D2 reads the file as a stream, any line
    layout with the right total is accepted; a wrong total or a non-number raises a
    :class:`UserError` naming the file, the line and what was expected there.
    """
    expected = int(sum(row_lengths))
    text = _read_text(path)
    values, complete = _parse_all(text)
    if complete and values.size == expected:
        if not np.isfinite(values).all():
            raise _non_finite_error(path, text)
        return values
    raise _layout_error(path, text, list(row_lengths), what)


def _read_text(path: Path) -> str:
    if path.is_dir():
        raise UserError("a weights file was expected, this is a folder: remove or rename it",
                        file=path)
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read the weights file ({exc.strerror or exc})",
                        file=path) from None


def _shown(token: str) -> str:
    return token if len(token) <= 24 else token[:20] + "..."


def _non_finite_error(path: Path, text: str) -> UserError:
    """NaN or an infinite value: a weight the network cannot use (it would turn every output
    into NaN without a word); the first one, located."""
    for number, line in enumerate(text.splitlines(), start=1):
        for token in line.split():
            if not np.isfinite(float(token)):
                return UserError(f"'{_shown(token)}' is not a finite number (NaN and infinite "
                                 "values cannot be loaded): fix the value or re-export the "
                                 "folder", file=path, line=number)
    return UserError("a value is not a finite number", file=path)


def _parse_all(text: str) -> tuple[np.ndarray, bool]:
    """All numbers of `text` (parsed in C) and whether the parse reached the end of the text.

    ``np.fromstring`` stops at the first unparsable token: numpy >= 2.3 raises ValueError,
    older versions warn (DeprecationWarning) and return what they parsed.
    """
    if not text.strip():
        return np.empty(0), True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        try:
            values = np.fromstring(text, dtype=np.float64, sep=" ")
        except ValueError:
            return np.empty(0), False
    return values, not any(issubclass(w.category, DeprecationWarning) for w in caught)


def _layout_error(path: Path, text: str, row_lengths: list[int], what: str) -> UserError:
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        for token in line.split():
            try:
                float(token)
            except ValueError:
                return UserError(f"'{_shown(token)}' is not a number", file=path,
                                 line=number)
    counts = [len(line.split()) for line in lines]
    total, expected = sum(counts), sum(row_lengths)
    filled = [i for i, n in enumerate(counts) if n]
    # Same number of non-empty lines: point at the first line with a wrong count.
    if len(filled) == len(row_lengths):
        for row, index in enumerate(filled):
            if counts[index] != row_lengths[row]:
                return UserError(
                    f"{counts[index]} values on this line, expected {row_lengths[row]} "
                    f"({what} {row}); the file holds {total} values, expected {expected}",
                    file=path,
                    line=index + 1,
                )
    if total < expected:
        last = filled[-1] + 1 if filled else 1
        return UserError(
            f"too few values: {total}, expected {expected} "
            f"({len(row_lengths)} lines, one per {what})",
            file=path,
            line=last,
        )
    # Too many: the line where the running count first exceeds the expected total.
    running = 0
    for index, n in enumerate(counts):
        running += n
        if running > expected:
            return UserError(
                f"too many values: {total}, expected {expected} "
                f"({len(row_lengths)} lines, one per {what})",
                file=path,
                line=index + 1,
            )
    return UserError(f"unexpected layout, expected {expected} values", file=path, line=1)
