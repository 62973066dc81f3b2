#!/usr/bin/env python3
"""Install the ONNX model zoo networks that N2D2's installer offered (spec/onnx.md).

    python tools/install_onnx_models.py --list
    python tools/install_onnx_models.py resnet-18-v1 mobilenetv2
    python tools/install_onnx_models.py --all --dest /data/models
    python tools/install_onnx_models.py resnet-18-v1 --from ~/Downloads

Each model lands in ``$N2Q_MODELS/ONNX/<name>/`` (default ``~/.n2q/models``; ``$N2D2_MODELS``
is read too) under the file name N2D2's INIs use (``resnet-18-v1/resnet18v1.onnx``), which the
INIs of ``models/ONNX/`` expect. Downloads are resumable (HTTP Range on ``<file>.part``), show
a progress bar and are verified by SHA-256 against the zoo's published versions before
anything is installed. Without internet, fetch the files elsewhere and use ``--from DIR``.

Exit status: 0 success, 2 a problem the user can fix (unknown name, offline, bad checksum).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ itself, for _download
from _download import CHUNK, file_digest, resume_download  # noqa: E402

ZOO_URL = "https://github.com/onnx/models/raw/main/validated/vision/classification"
LEGACY_URL = "https://s3.amazonaws.com/onnx-model-zoo"   # the URLs N2D2's installer used


@dataclass
class ZooModel:
    """One installable model: where to fetch it, how to check it, where it goes."""

    name: str
    file: str                 # the downloaded file's name
    urls: list[str]           # tried in order
    install_as: str           # path under ONNX/<name>/ (N2D2's layout)
    sha256: list[str] = field(default_factory=list)  # accepted versions (the zoo re-uploads)
    size: int | None = None   # bytes of the download (a known version), for the progress bar
    top1: str = ""            # ILSVRC2012 top-1 from the zoo README, shown by --list

    @property
    def archive(self) -> bool:
        return self.file.endswith((".tar.gz", ".tgz", ".tar"))


def _resnet(depth: int, version: int, sha256: list[str], size: int | None, top1: str
            ) -> ZooModel:
    zoo_file = f"resnet{depth}-v{version}-7.onnx"
    legacy = f"{LEGACY_URL}/resnet/resnet{depth}v{version}/resnet{depth}v{version}.onnx"
    return ZooModel(f"resnet-{depth}-v{version}", zoo_file,
                    [f"{ZOO_URL}/resnet/model/{zoo_file}", legacy],
                    f"resnet{depth}v{version}.onnx", sha256, size, top1)


# SHA-256 values are the Git LFS object ids of the zoo's files (every version found); sizes
# are those of the first listed version.
MODELS: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("googlenet", "googlenet-9.tar.gz",
             [f"{ZOO_URL}/inception_and_googlenet/googlenet/model/googlenet-9.tar.gz",
              "https://s3.amazonaws.com/download.onnx/models/opset_9/bvlc_googlenet.tar.gz"],
             "bvlc_googlenet/model.onnx",
             ["ea5a81dd36c3067a78cfc1e6baa7a4142849e28d97d054fdc42aa1f9539d400f"], 26565214,
             "67.7%"),
    ZooModel("mobilenetv2", "mobilenetv2-7.onnx",
             [f"{ZOO_URL}/mobilenet/model/mobilenetv2-7.onnx",
              f"{LEGACY_URL}/mobilenet/mobilenetv2-1.0/mobilenetv2-1.0.onnx"],
             "mobilenetv2-1.0.onnx",
             ["c1c513582d56afceff8516c73804e484c81c6a830712ab6d682253f4a3cd042f"], 14246826,
             "70.94%"),
    _resnet(18, 1, ["4e8f8653e7a2222b3904cc3fe8e304cd8b339ce1d05fd24688162f86fb6df52c"],
            46820737, "69.93%"),
    _resnet(34, 1, [], 87302588, "73.73%"),
    _resnet(50, 1, [], 102583340, "74.93%"),
    _resnet(101, 1, ["faafaf3aea406a105e26805cf3e8e591549e1c06feb60a8e60d85bcf94f8d8c5"],
            178914041, "76.48%"),
    _resnet(152, 1, ["b0ec92437bf8c9d0739bf9bafdea9638e13f9e3c1e2fb766ad546cc182fd3f6d",
                     "a1c165290f7ac03128a24d9e34e8497d27630498d503c80b762a41169b64c112"],
            241816206, "77.11%"),
    _resnet(18, 2, ["3b4d048057854022232aa20bf68262e31718ab7119a17f920b8a2dc1433f824b"],
            46806737, "69.70%"),
    _resnet(34, 2, ["17f9350e613339ffd46314bb905998f1adaaa6cf983a8c058efbb3cbc6046ca5"],
            87288585, "73.36%"),
    _resnet(50, 2, ["1e80e8a7c8eec8e8b20c440d7dd7f2f8590779c7c2859dc4514870dc463845d3"],
            102442450, "75.81%"),
    _resnet(101, 2, ["b610c141f3b26bf8324dcbd13532779cceedffac5213dbcc3ad0047b489ce304"],
            178682299, "77.42%"),
    _resnet(152, 2, ["40fb3f6dd313ba786a2c8077a0ef7d7b4afeda5d037365400d3a7fbc2b1bee64"],
            241503848, "78.20%"),
    ZooModel("squeezenet", "squeezenet1.0-9.tar.gz",
             [f"{ZOO_URL}/squeezenet/model/squeezenet1.0-9.tar.gz",
              "https://s3.amazonaws.com/download.onnx/models/opset_9/squeezenet.tar.gz"],
             "squeezenet/model.onnx",
             ["6fe464d54084434993e5f12a42288b0dfd04feb5630d584ff1cc03195248dcaf"], 5154540,
             "56.34%"),
    ZooModel("vgg16", "vgg16-7.onnx",
             [f"{ZOO_URL}/vgg/model/vgg16-7.onnx", f"{LEGACY_URL}/vgg/vgg16/vgg16.onnx"],
             "vgg16.onnx",
             ["f20805a3ecccaa88647bbab4ad011ff2412a9838485ea844de0fcbce349820b9"], 553437328,
             "72.62%"),
    ZooModel("vgg16-bn", "vgg16-bn-7.tar.gz",
             [f"{ZOO_URL}/vgg/model/vgg16-bn-7.tar.gz"], "vgg16-bn.onnx",
             ["143e59ca3000cc3b461cfe09d4c62a93bb5e9f7a0c4e5db0010e1a525fdd50bd",
              "038c2009704127b644a613de6bb0c69152663c96e5085dfae8440ed37c512b65"], 512894836,
             "72.71%"),
    ZooModel("vgg19", "vgg19-7.tar.gz", [f"{ZOO_URL}/vgg/model/vgg19-7.tar.gz"], "vgg19.onnx",
             ["363d508b5fb5eb7b3471c441f7a901d8494a3801032bdd1da79d923cd40a43e0"], 532126985,
             "73.72%"),
    ZooModel("vgg19-bn", "vgg19-bn-7.tar.gz", [f"{ZOO_URL}/vgg/model/vgg19-bn-7.tar.gz"],
             "vgg19-bn.onnx",
             ["c33a766ff3a6da19a5a5f679b8e0ae9742c1ebbef5be2be587f4f98db890cf8b"], 532274920,
             "73.83%"),
]}
CHECKSUMS_FILE = "SHA256SUMS"


class InstallError(Exception):
    """A problem the user can fix: printed as one line, exit status 2."""


# -- where ---------------------------------------------------------------------------------------
def models_root(dest: str | None) -> Path:
    """--dest, else $N2Q_MODELS, else $N2D2_MODELS, else ~/.n2q/models."""
    for value in (dest, os.environ.get("N2Q_MODELS"), os.environ.get("N2D2_MODELS")):
        if value:
            return Path(value).expanduser()
    return Path.home() / ".n2q" / "models"


def target_path(root: Path, model: ZooModel) -> Path:
    return root / "ONNX" / model.name / model.install_as


# -- checking ------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    return file_digest(path, "sha256")


def verify(model: ZooModel, path: Path, trust_new: bool) -> str:
    """The file's SHA-256, checked against the known versions."""
    digest = sha256_of(path)
    if model.sha256 and digest not in model.sha256:
        if not trust_new:
            raise InstallError(
                f"{model.name}: checksum mismatch for {path.name} (sha256 {digest}, expected "
                f"{' or '.join(model.sha256)}; file kept at {path}): the download is corrupt "
                "or the zoo published a new version; delete it and retry, or accept it with "
                "--trust-new-checksum")
        print(f"{model.name}: accepting new checksum {digest} (--trust-new-checksum)")
    elif not model.sha256:
        print(f"{model.name}: no published checksum is known for {model.file}; recorded sha256 "
              f"{digest} in {CHECKSUMS_FILE} (later installs are checked against it)")
    return digest


def check_onnx(model: ZooModel, path: Path) -> None:
    """The installed file must at least parse as an ONNX model."""
    try:
        import onnx

        onnx.load(str(path), load_external_data=False)
    except ImportError:
        return
    except Exception as exc:
        raise InstallError(f"{model.name}: {path} is not a valid ONNX model ({exc})") from None


# -- fetching ------------------------------------------------------------------------------------
def download(model: ZooModel, folder: Path) -> Path:
    """The model's file in ``folder``, fetched (or resumed) from the first URL that answers."""
    final = folder / model.file
    if final.is_file():
        return final
    errors = []
    for url in model.urls:
        try:
            resume_download(url, final, model.size)
            return final
        except urllib.error.HTTPError as exc:
            errors.append(f"{url}: HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            errors.append(f"{url}: {reason}")
    raise InstallError(f"{model.name}: cannot download {model.file} ({'; '.join(errors)}). "
                       "Offline? Download it on a machine with internet from "
                       f"{model.urls[0]} and install it with --from DIR")


def find_local(model: ZooModel, folder: Path) -> Path:
    """--from DIR: the zoo file, or a file already named as installed, anywhere under DIR."""
    names = {model.file, Path(model.install_as).name, Path(model.urls[-1]).name}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name in names and not path.name == "model.onnx":
            return path
    raise InstallError(f"{model.name}: none of {', '.join(sorted(names))} is under {folder}: "
                       f"download {model.urls[0]} there first")


# -- installing ----------------------------------------------------------------------------------
def install(model: ZooModel, root: Path, source: Path | None, trust_new: bool) -> Path:
    """Install one model; on failure, folders this call created are removed again (a
    resumable ``.part`` download is kept, and with it its folder)."""
    target = target_path(root, model)
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _install(model, target, source, trust_new)
    except BaseException:
        for folder in created:   # deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _install(model: ZooModel, target: Path, source: Path | None, trust_new: bool) -> Path:
    recorded = _recorded_checksums(target.parent)
    if target.is_file() and recorded.get(model.install_as) == sha256_of(target):
        print(f"{model.name}: already installed ({target})")
        return target
    if recorded.get(model.file):
        model = ZooModel(**{**model.__dict__, "sha256": [*model.sha256,
                                                         recorded[model.file]]})
    downloaded = find_local(model, source) if source else download(model, target.parent)
    digest = verify(model, downloaded, trust_new)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        if model.archive and tarfile.is_tarfile(downloaded):
            _extract_onnx(model, downloaded, staged)
        else:
            shutil.copyfile(downloaded, staged)
        check_onnx(model, staged)
        staged.replace(target)   # atomic: a half-installed model never looks installed
    _record_checksums(target.parent, {model.file: digest,
                                      model.install_as: sha256_of(target)})
    if source is None and downloaded.parent == target.parent and downloaded != target:
        downloaded.unlink()
    print(f"{model.name}: installed {target}")
    return target


def _extract_onnx(model: ZooModel, archive: Path, staged: Path) -> None:
    """The (largest) .onnx member of a zoo archive."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".onnx")]
        if not members:
            raise InstallError(f"{model.name}: {archive.name} holds no .onnx file")
        member = max(members, key=lambda m: m.size)
        source = tar.extractfile(member)
        assert source is not None
        with staged.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK)


def _recorded_checksums(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUMS_FILE
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name:
            out[name] = digest
    return out


def _record_checksums(folder: Path, entries: dict[str, str]) -> None:
    recorded = {**_recorded_checksums(folder), **entries}
    text = "".join(f"{digest}  {name}\n" for name, digest in sorted(recorded.items()))
    (folder / CHECKSUMS_FILE).write_text(text)


# -- command line --------------------------------------------------------------------------------
def list_models(root: Path) -> str:
    rows = []
    for model in MODELS.values():
        target = target_path(root, model)
        state = "installed" if target.is_file() else "-"
        size = f"{model.size / 1e6:.0f} MB" if model.size else "?"
        rows.append(f"  {model.name:<14} {size:>8}  top-1 {model.top1:<7} {state:<9} "
                    f"ONNX/{model.name}/{model.install_as}")
    return f"Models (install root {root}):\n" + "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Install ONNX model zoo networks under $N2Q_MODELS/ONNX/<name>/.",
        epilog="names: " + ", ".join(MODELS))
    parser.add_argument("names", nargs="*", help="models to install")
    parser.add_argument("--all", action="store_true", help="install every model")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--dest", help="install root (default $N2Q_MODELS, $N2D2_MODELS or "
                        "~/.n2q/models); models go to DEST/ONNX/<name>/")
    parser.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="install from files already downloaded into DIR")
    parser.add_argument("--trust-new-checksum", action="store_true",
                        help="accept a file whose checksum is not a known zoo version")
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)  # tests, mirrors
    return parser.parse_args(argv)


def load_manifest(path: Path) -> None:
    """Replace the model table by a JSON list of ZooModel fields (mirrors, tests)."""
    MODELS.clear()
    for entry in json.loads(path.read_text()):
        MODELS[entry["name"]] = ZooModel(**entry)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.manifest:
            load_manifest(args.manifest)
        root = models_root(args.dest)
        if args.list:
            print(list_models(root))
            return 0
        names = list(MODELS) if args.all else args.names
        if not names:
            print("nothing to install: give model names or --all\n" + list_models(root),
                  file=sys.stderr)
            return 2
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            import difflib

            hints = [f"{n} (did you mean {c[0]}?)" if (c := difflib.get_close_matches(
                n, list(MODELS), 1)) else n for n in unknown]
            raise InstallError(f"unknown model(s): {', '.join(hints)}; valid: "
                               f"{', '.join(MODELS)}")
        if args.source is not None and not args.source.is_dir():
            raise InstallError(f"--from {args.source}: not a folder")
        for name in names:
            install(MODELS[name], root, args.source, args.trust_new_checksum)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
