#!/usr/bin/env python3
"""Install the data sets n2q's data bases read into the data root ($N2Q_DATA, else ~/.n2q/data).

    python tools/install_datasets.py mnist                 # download (resumable), check, install
    python tools/install_datasets.py cifar-10 --from DIR   # use archives already on disk

Downloads go to ``<root>/.downloads/<file>.part`` and resume with an HTTP Range request when
interrupted; every file is checked against its MD5 before it is installed. Offline, the command
says so in one line and tells how to use ``--from``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ itself, for _download
from _download import file_digest, resume_download  # noqa: E402


@dataclass
class Remote:
    name: str  # file name, also what --from looks for
    url: str
    md5: str


@dataclass
class Dataset:
    folder: str  # installed under <root>/<folder>
    files: list[Remote] = field(default_factory=list)
    archive: bool = False  # a .tar.gz whose top folder is `folder`


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_CIFAR = "https://www.cs.toronto.edu/~kriz/"

_IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_files(base: str, md5s: tuple[str, str, str, str]) -> list[Remote]:
    """The four IDX files of an MNIST-format data set, in _IDX_FILES order."""
    return [Remote(name, base + name, md5) for name, md5 in zip(_IDX_FILES, md5s, strict=True)]


def _cifar_archive(folder: str, file: str, md5: str) -> Dataset:
    """A CIFAR binary archive whose top folder ``folder`` is installed as is."""
    return Dataset(folder, [Remote(file, _CIFAR + file, md5)], archive=True)


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset("mnist", _idx_files(_MNIST, (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
    "fashion-mnist": Dataset("fashion-mnist", _idx_files(_FASHION, (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))),
    "cifar-10": _cifar_archive("cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                               "c32a1d4ab5d03f1284b67883e8d87530"),
    "cifar-100": _cifar_archive("cifar-100-binary", "cifar-100-binary.tar.gz",
                                "03b5dce01913d631647c71ecec9e9cb8"),
}


class InstallError(Exception):
    """A problem reported as one line (exit status 2)."""


def data_root() -> Path:
    for variable in ("N2Q_DATA", "N2D2_DATA"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    return Path.home() / ".n2q" / "data"


def md5_of(path: Path) -> str:
    return file_digest(path, "md5")


def download(remote: Remote, target: Path, dataset: str, quiet: bool = False) -> None:
    """Fetch ``remote`` to ``target``, resuming ``target.part`` with an HTTP Range request."""
    try:
        resume_download(remote.url, target, quiet=quiet)
    except urllib.error.HTTPError as exc:
        raise InstallError(f"cannot download {remote.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InstallError(
            f"cannot download {remote.url}: offline or unreachable ({reason}); download "
            f"{remote.name} elsewhere and run: python tools/install_datasets.py {dataset} "
            "--from DIR") from None


def verify(path: Path, remote: Remote, fix: str = "delete it and install again") -> None:
    got = md5_of(path)
    if got != remote.md5:
        raise InstallError(f"{path}: MD5 {got} does not match the expected {remote.md5} "
                           f"(corrupt or different file): {fix}")


def fetch(name: str, dataset: Dataset, root: Path, source: Path | None, quiet: bool) -> list[Path]:
    """The checked archive files, from --from DIR or downloaded into <root>/.downloads."""
    paths = []
    for remote in dataset.files:
        if source is not None:
            path = source / remote.name
            if not path.is_file():
                raise InstallError(f"{path}: not found (--from expects the original file "
                                   f"{remote.name} of {name})")
        else:
            downloads = root / ".downloads"
            downloads.mkdir(parents=True, exist_ok=True)
            path = downloads / remote.name
            if not path.is_file():
                download(remote, path, name, quiet)
        try:
            verify(path, remote, "install again (the bad download was deleted)"
                   if source is None else f"give the original {remote.name} of {name}")
        except InstallError:
            if source is None:
                path.unlink()  # a bad download must not be resumed from
            raise
        paths.append(path)
    return paths


def install(name: str, root: Path, source: Path | None = None, quiet: bool = False) -> Path:
    """Install data set ``name`` under ``root``; returns its folder."""
    if name not in DATASETS:
        raise InstallError(f"unknown data set '{name}': choose from {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    target = root / dataset.folder
    paths = fetch(name, dataset, root, source, quiet)
    staging = root / f".{dataset.folder}.installing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in paths:
        if dataset.archive:
            _extract(path, staging, dataset.folder)
        else:
            shutil.copyfile(path, staging / path.name)
    if target.exists():
        shutil.rmtree(target)
    staging.replace(target)
    return target


def _extract(archive: Path, staging: Path, folder: str) -> None:
    """Extract the archive's top folder ``folder`` into ``staging`` (flattening that level)."""
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            for m in members:
                parts = Path(m.name).parts
                if len(parts) < 2 or parts[0] != folder or ".." in parts:
                    continue
                dest = staging.joinpath(*parts[1:])
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InstallError(f"{archive}: cannot extract ({exc})") from None
    if not any(staging.iterdir()):
        raise InstallError(f"{archive}: no {folder}/ folder inside")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", metavar="NAME",
                        help=f"data sets: {', '.join(DATASETS)} or all")
    parser.add_argument("--from", dest="source", type=Path,
                        help="folder holding the original files (no download)")
    parser.add_argument("--root", type=Path, help="data root (default $N2Q_DATA or "
                        "~/.n2q/data)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    names = list(DATASETS) if args.datasets == ["all"] else args.datasets
    root = args.root or data_root()
    try:
        for name in names:
            folder = install(name, root, args.source, args.quiet)
            print(f"{name}: installed in {folder}")
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
