"""Where data sets live: ``$N2Q_DATA`` (alias ``$N2D2_DATA``), else ``~/.n2q/data``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from n2q.errors import UserError

if TYPE_CHECKING:
    from n2q.config import Section

INSTALL_HINT = "python tools/install_datasets.py"


def data_root() -> Path:
    for variable in ("N2Q_DATA", "N2D2_DATA"):
        value = os.environ.get(variable)
        if value:
            return Path(value).expanduser()
    return Path.home() / ".n2q" / "data"


def dataset_path(section: Section, key: str, default: str | None) -> Path | None:
    """``section[key]`` as a path; a relative one is taken under the data root."""
    value = section.path(key, None, base=data_root())
    if value is None:
        return data_root() / default if default is not None else None
    return value


def missing_dataset(section: Section, key: str, path: Path, what: str,
                    install_name: str | None) -> UserError:
    """The one-line error for a data set that is not where the INI says."""
    fix = (f"install it with `{INSTALL_HINT} {install_name}`" if install_name
           else "put the data there")
    where = "" if section.entry(key) else f" (default {key}, under the data root $N2Q_DATA)"
    return section.error(key if section.entry(key) else None,
                         f"{what} not found at {path}{where}: {fix}, or set {key}= / $N2Q_DATA")
