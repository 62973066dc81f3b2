"""Reading IDX files (the MNIST format), plain or gzip-compressed."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from n2q.errors import UserError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def find_idx(folder: Path, name: str) -> Path | None:
    """``folder/name``, else ``folder/name.gz``."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """The array of an IDX file; a wrong magic or a truncated file is a UserError naming it."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # zlib.error: a damaged deflate stream (EOFError: cut short, BadGzipFile: CRC, header)
        raise UserError(f"cannot read IDX file ({exc}): re-download it", file=path) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _TYPES:
        raise UserError(f"not an IDX file (wrong magic number {raw[:4].hex() or 'empty'}): "
                        "re-download it (python tools/install_datasets.py mnist)", file=path)
    dtype = np.dtype(_TYPES[raw[2]])
    ndims = raw[3]
    if ndims != expected_dims:
        raise UserError(f"IDX file has {ndims} dimensions, expected {expected_dims} "
                        "(images and labels swapped?)", file=path)
    header = 4 + 4 * ndims
    if len(raw) < header:
        raise UserError("truncated IDX file (incomplete header): re-download it", file=path)
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims)]
    expected = header + math.prod(dims) * dtype.itemsize  # Python ints: no int64 overflow
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "oversized"
        raise UserError(f"{what} IDX file: {len(raw)} bytes for dimensions "
                        f"{'x'.join(map(str, dims))} ({expected} expected): re-download it",
                        file=path)
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(
        dtype.newbyteorder("=") if dtype.itemsize > 1 else dtype)
