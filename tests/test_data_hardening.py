"""Issue 16, data side: damaged or inconsistent IDX files end in one line naming the file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from n2q.config import load_config
from n2q.data.databases import make_database
from n2q.data.databases.idx import read_idx
from n2q.errors import UserError

_NAMES = {"train-images-idx3-ubyte": (10, 3, 2), "train-labels-idx1-ubyte": (10,),
          "t10k-images-idx3-ubyte": (4, 3, 2), "t10k-labels-idx1-ubyte": (4,)}


def idx_bytes(shape: tuple[int, ...], body: bytes | None = None) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, len(shape)) + b"".join(
        struct.pack(">I", d) for d in shape)
    count = int(np.prod(shape)) if body is None else 0
    return header + (body if body is not None else bytes(i % 10 for i in range(count)))


def write_mnist(folder: Path, gz: bool = False, **shapes: tuple[int, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, shape in _NAMES.items():
        data = idx_bytes(shapes.get(name.replace("-", "_"), shape))
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def mnist(tmp_path: Path, folder: Path):
    ini = tmp_path / "net.ini"
    ini.write_text(f"[database]\nType=MNIST_IDX_Database\nDataPath={folder}\n")
    return make_database(load_config(ini), 1)


def test_corrupted_gzip_stream_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=True)
    path = folder / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    # gzip header is 10 bytes: damage the deflate stream itself (zlib.error, not EOF or CRC)
    for i in range(10, 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=rf"^{path}: .*re-download it"):
        mnist(tmp_path, folder)


def test_test_images_of_another_size_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    write_mnist(folder, t10k_images_idx3_ubyte=(4, 5, 2))
    path = folder / "t10k-images-idx3-ubyte"
    with pytest.raises(UserError, match=rf"^{path}: images of 5x2 pixels, .*3x2"):
        mnist(tmp_path, folder)


def test_absurd_dimensions_are_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), body=b"\x00" * 8))
    with pytest.raises(UserError, match=rf"^{path}: truncated IDX file"):
        read_idx(path, 3)


def test_non_integer_labels_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    write_mnist(folder)
    path = folder / "train-labels-idx1-ubyte"
    path.write_bytes(struct.pack(">BBBBI", 0, 0, 0x0D, 1, 10)
                     + np.full(10, np.nan, ">f4").tobytes())
    with pytest.raises(UserError, match=rf"^{path}: .*label"):
        mnist(tmp_path, folder)
