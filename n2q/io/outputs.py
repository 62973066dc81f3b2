"""The paths a run will write, checked before it writes anything (spec/cli.md, "What a run
does and writes").

A run that finds ``seed.dat`` to be a folder, or a file named ``weights_validation`` after an
hour of learning, fails with half its results on disk. :func:`check_outputs` looks at every
path first: a path taken by the wrong kind of thing (a file where a folder goes, or the
reverse) is a one-line error naming it, before the first file is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from n2q.errors import UserError

_PHASES = ("learning", "validation", "test")
# what n2q.train.reports writes in a target folder (N2D2's names)
TARGET_FILES = tuple(
    [f"Success_{p}.{ext}" for p in _PHASES for ext in ("dat", "png")]
    + [f"ConfusionMatrix_{p}{suffix}" for p in _PHASES
       for suffix in (".dat", ".png", "_score.dat")]
    + [f"Misclassified_{p}.dat" for p in _PHASES] + ["labels_mapping.log.dat"])


@dataclass(frozen=True)
class RunOutputs:
    """What one command will write in its working directory."""

    files: tuple[str, ...]
    folders: tuple[str, ...]
    target_folders: tuple[str, ...]


def run_outputs(ini_name: str, target_sections: list[str], target_cells: list[str], *,
                seed_file: bool, learn: bool, resume: bool, test: bool, qat_sat: bool,
                bench: bool, find_lr: bool, export: str | None = None) -> RunOutputs:
    """The files and folders of a run (``ini_name``: the network file's name; the graph is
    ``<ini_name>.dot/.png/.svg``; find-lr writes ``find_lr_<target cell>.dat/.png``)."""
    files = [f"{ini_name}.{ext}" for ext in ("dot", "png", "svg")]
    folders: list[str] = [f"export_{export}"] if export else []
    if seed_file:
        files.append("seed.dat")
    if find_lr:
        files += [f"find_lr_{cell}.{ext}" for cell in target_cells for ext in ("dat", "png")]
    if learn:
        folders += ["weights", "net_state", "weights_validation", "net_state_validation"]
        folders += [] if resume else ["weights_init"]
        folders += ["timings"] if bench else []
    if test and qat_sat:
        folders.append("weights_quantized")
    return RunOutputs(tuple(files), tuple(folders), tuple(target_sections))


def check_outputs(workdir: Path, outputs: RunOutputs) -> None:
    """UserError for the first output path already taken by something of the other kind, or
    a working directory n2q cannot write in."""
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise UserError(f"cannot write in the working directory {workdir.resolve()}: run n2q "
                        "in a folder you can write to")
    for name in outputs.files:
        _expect(workdir / name, folder=False)
    for name in outputs.folders + outputs.target_folders:
        _expect(workdir / name, folder=True)
    for name in outputs.target_folders:
        if (workdir / name).is_dir():
            for file in TARGET_FILES:
                _expect(workdir / name / file, folder=False)


def _expect(path: Path, *, folder: bool) -> None:
    if not (path.exists() or path.is_symlink()):
        return
    if folder and not path.is_dir():
        raise UserError(f"{path} is a file, but n2q writes a folder of that name here: rename "
                        "or remove it, or run in another folder")
    if not folder and path.is_dir():
        raise UserError(f"{path} is a folder, but n2q writes a file of that name here: rename "
                        "or remove it, or run in another folder")
