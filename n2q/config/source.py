"""Reading INI and template files as UTF-8 text, with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

from n2q.errors import UserError

# An INI or template larger than this is not a network description (the whole N2D2 corpus
# is under 100 kB): refuse it rather than read gigabytes into memory.
MAX_SOURCE_BYTES = 16_000_000


def read_source(path: Path, what: str) -> str:
    """The text of ``path`` (a leading BOM dropped). Not UTF-8: the line of the first bad
    byte and the fix; OSError / too large: one line naming the file. ``what`` = "INI file" or
    "template file"."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(MAX_SOURCE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{what} not found: check the path", file=path) from None
    except IsADirectoryError:
        raise UserError(f"{what} expected, found a folder", file=path) from None
    except OSError as exc:
        raise UserError(f"cannot read the {what} ({exc.strerror or exc})", file=path) from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise UserError(f"{what} larger than {MAX_SOURCE_BYTES} bytes: not a network "
                        "description", file=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UserError(f"byte 0x{raw[exc.start]:02x} is not UTF-8 text: save the file as "
                        "UTF-8", file=path, line=line) from None
    return text.removeprefix("\ufeff")


def template_roots(ini: str | Path) -> list[Path]:
    """Where templates and their includes may come from (N2D2: next to the INI, or on the
    template path ``$N2D2_MODELS`` / ``$N2Q_MODELS``): the INI's folder and those folders."""
    import os

    roots = [Path(ini).parent]
    for name in ("N2Q_MODELS", "N2D2_MODELS"):
        if os.environ.get(name):
            roots.append(Path(os.environ[name]).expanduser())
    return [root.resolve() for root in roots]


def inside_roots(path: Path, roots: list[Path]) -> bool:
    """``path``, links resolved, lies in one of ``roots`` (or below)."""
    real = path.resolve()
    return any(real == root or root in real.parents for root in roots)
