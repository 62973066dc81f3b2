"""Resumable HTTP downloads and file checksums shared by the installers in ``tools/``.

``resume_download`` writes ``<target>.part`` and renames it to ``target`` only when complete,
so an interrupted download is resumed (HTTP Range request) by the next run and a half-fetched
file never looks installed. Network failures propagate as ``urllib.error.URLError`` /
``OSError``; each installer turns them into its own one-line message.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20
TIMEOUT_S = 30


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest (``"md5"``, ``"sha256"``) of the file at ``path``, read in chunks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def resume_download(url: str, target: Path, size: int | None = None, quiet: bool = False) -> None:
    """Fetch ``url`` to ``target`` through ``target.part``, resuming an earlier attempt.

    ``size`` (bytes) only feeds the progress bar when the server sends no Content-Length.
    Raises ``OSError`` when the connection ends before the announced length.
    """
    from tqdm import tqdm

    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "n2q-installer"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # "range not satisfiable": the .part is already whole
            part.replace(target)
            return
        raise
    with response:
        if done and response.status != 206:  # the server ignored the Range: start over
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else size
        with part.open("ab" if done else "wb") as out, tqdm(
                total=total, initial=done, unit="B", unit_scale=True, desc=target.name,
                disable=quiet) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
    got = part.stat().st_size
    if length is not None and got != total:
        raise OSError(f"incomplete download ({got} of {total} bytes); run again to resume")
    part.replace(target)
