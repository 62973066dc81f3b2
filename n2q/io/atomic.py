"""Folders that appear complete or not at all: write into ``<folder>.tmp-<pid>``, then rename."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``folder`` (existing or not).

    On any exception, Ctrl-C included, the temporary folder is removed and ``folder`` is left
    exactly as it was. The replacement is two renames (old -> ``.old-<pid>``, tmp -> folder),
    so a crash between them leaves the previous version under ``.old-<pid>``, never a mix.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder")
    remove_stale(target)
    tmp = temporary_name(target)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace(tmp, target)


def _replace(tmp: Path, target: Path) -> None:
    if not target.exists():
        tmp.rename(target)
        return
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(target: Path) -> None:
    """Remove ``<folder>.tmp-<pid>`` / ``.old-<pid>`` left by runs killed mid-write (kill -9,
    power loss): their process is gone. Those of live processes (another run writing into the
    same directory) are left alone."""
    for leftover in target.parent.glob(f"{target.name}.*-*"):
        kind, _, pid = leftover.name[len(target.name) + 1:].partition("-")
        if kind in ("tmp", "old") and pid.isdigit() and int(pid) != os.getpid() \
                and not _alive(int(pid)) and leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
