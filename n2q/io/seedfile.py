"""The seed of a run: ``-seed N`` and ``seed.dat`` (spec/cli.md).

A seed is what N2D2 writes: ASCII decimal digits, 0 <= seed < 2^64 (torch's generator takes
64 bits; a larger number would fail deep inside torch with a traceback).
"""

from __future__ import annotations

import re
from pathlib import Path

from n2q.errors import UserError

SEED_LIMIT = 2 ** 64
SEED_FILE = "seed.dat"
_DIGITS = re.compile(r"[0-9]{1,30}")  # ASCII only: int() would take "１２" and "1_000"


def parse_seed(text: str, where: str) -> int:
    """``text`` as a seed; UserError "WHERE: ..." otherwise (``where``: "-seed" or a file
    name prefix)."""
    if not _DIGITS.fullmatch(text) or int(text) >= SEED_LIMIT:
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise UserError(f"{where}: '{shown}' is not a seed: write an integer from 0 to "
                        f"2^64 - 1 ({SEED_LIMIT - 1}) in ASCII digits")
    return int(text)


def read_seed_file(path: Path) -> int:
    """The seed written in ``path`` (seed.dat); a located UserError when it is not one."""
    if path.is_dir():
        raise UserError(f"{SEED_FILE} must be a file, this is a folder: remove or rename it",
                        file=path)
    try:
        raw = path.read_bytes()[:64]
    except OSError as exc:
        raise UserError(f"cannot read the seed ({exc.strerror or exc})", file=path) from None
    text = raw.decode("ascii", errors="replace").strip()
    if not _DIGITS.fullmatch(text) or int(text) >= SEED_LIMIT:
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise UserError(f"'{shown}' is not a seed: write one integer from 0 to 2^64 - 1 or "
                        "delete the file", file=path, line=1)
    return int(text)
