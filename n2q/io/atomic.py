"""Folders that appear complete or not at all: write into ``<folder>.tmp-<pid>``, then rename.

Replacing an existing folder takes two renames (old -> ``<folder>.old-<pid>``, tmp ->
folder): a kill between them leaves the previous complete version under ``.old-<pid>`` and no
``<folder>``. :func:`recover_interrupted` (called at the start of every run, and for its
target by every save) puts such a version back and removes half-written ``.tmp-<pid>``
folders, saying so; nothing ever reads a ``.tmp-<pid>`` folder (:func:`refuse_half_written`).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from n2q.errors import UserError, notice

# <folder>.tmp-<pid> / <folder>.old-<pid>
_LEFTOVER = re.compile(r"^(?P<target>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")


def temporary_name(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``folder`` (existing or not).

    On any exception, Ctrl-C included, the temporary folder is removed and ``folder`` is left
    exactly as it was.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder")
    recover_interrupted(target.parent, only=target.name)
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
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def recover_interrupted(directory: str | Path = ".", only: str | None = None) -> None:
    """Repair what runs killed mid-save (kill -9, power loss) left in ``directory`` (only the
    leftovers of folder ``only`` when given), with a notice for each:

    - ``X.old-<pid>`` without ``X``: the previous complete version; renamed back to ``X``;
    - ``X.old-<pid>`` beside ``X``: the replacement finished; removed;
    - ``X.tmp-<pid>``: half-written; removed.

    Leftovers of live processes (another run writing in the same directory) are left alone.
    """
    directory = Path(directory)
    pattern = f"{glob.escape(only)}.*-*" if only else "*.*-*"
    # old before tmp: a restored X must exist before its tmp sibling is judged
    leftovers = sorted(directory.glob(pattern), key=lambda p: ".tmp-" in p.name)
    for path in leftovers:
        match = _LEFTOVER.match(path.name)
        if match is None or not path.is_dir() or _alive(int(match["pid"])):
            continue
        target = path.with_name(match["target"])
        if match["kind"] == "old" and not target.exists():
            path.rename(target)
            notice(f"restored {target} from {path.name}, the previous version left by a run "
                   "interrupted while replacing it")
        else:
            shutil.rmtree(path, ignore_errors=True)
            what = "half-written" if match["kind"] == "tmp" else f"an old copy of {target}"
            notice(f"removed {path}, {what} left by an interrupted run")


def refuse_half_written(folder: Path) -> None:
    """A ``.tmp-<pid>`` folder is never read: it may be half-written."""
    match = _LEFTOVER.match(folder.name)
    if match is not None and match["kind"] == "tmp":
        raise UserError(f"{folder} is a half-written folder left by an interrupted save: load "
                        f"{folder.with_name(match['target'])} instead")
