"""tools/install_datasets.py: --from, checksums, resumable downloads, the offline message."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import socket
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from helpers import write_cifar10, write_mnist

from n2q.config import load_config
from n2q.data.databases import make_database

TOOL = Path(__file__).resolve().parents[1] / "tools" / "install_datasets.py"


@pytest.fixture
def tool(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("install_datasets", TOOL)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "install_datasets", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def point_at(tool, name: str, folder: Path, url: str | None = None) -> None:
    """Make the tool's table describe the files the test wrote (their MD5s, a test URL)."""
    for remote in tool.DATASETS[name].files:
        remote.md5 = md5(folder / remote.name)
        if url is not None:
            remote.url = url + remote.name


def read_db(tmp_path: Path, body: str):
    path = tmp_path / "db.ini"
    path.write_text("[database]\n" + body)
    return make_database(load_config(path), 1)


def test_install_mnist_from_folder(tool, tmp_path: Path, monkeypatch, capsys) -> None:
    source = tmp_path / "downloaded"
    write_mnist(source, gz=True)
    point_at(tool, "mnist", source)
    root = tmp_path / "root"
    assert tool.main(["mnist", "--from", str(source), "--root", str(root), "-q"]) == 0
    assert "mnist: installed in" in capsys.readouterr().out
    monkeypatch.setenv("N2Q_DATA", str(root))
    assert read_db(tmp_path, "Type=MNIST_IDX_Database\n").partition_sizes()["Test"] == 4


def test_install_cifar10_archive_from_folder(tool, tmp_path: Path, monkeypatch) -> None:
    write_cifar10(tmp_path / "build" / "cifar-10-batches-bin")
    source = tmp_path / "downloaded"
    source.mkdir()
    with tarfile.open(source / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    point_at(tool, "cifar-10", source)
    monkeypatch.setenv("N2Q_DATA", str(tmp_path / "root"))
    assert tool.main(["cifar-10", "--from", str(source), "-q"]) == 0
    db = read_db(tmp_path, "Type=CIFAR10_Database\n")
    assert db.partition_sizes() == {"Learn": 10, "Validation": 0, "Test": 3}


def test_checksum_mismatch_refused(tool, tmp_path: Path, capsys) -> None:
    source = tmp_path / "downloaded"
    write_mnist(source, gz=True)
    point_at(tool, "mnist", source)
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    rc = tool.main(["mnist", "--from", str(source), "--root", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "t10k-labels-idx1-ubyte.gz: MD5" in err and "does not match" in err
    assert "give the original t10k-labels-idx1-ubyte.gz of mnist" in err
    assert not (tmp_path / "r" / "mnist").exists()
    assert (source / "t10k-labels-idx1-ubyte.gz").exists()  # the user's file is left alone


def test_missing_file_in_from_folder(tool, tmp_path: Path, capsys) -> None:
    rc = tool.main(["fashion-mnist", "--from", str(tmp_path), "--root", str(tmp_path / "r")])
    assert rc == 2 and "train-images-idx3-ubyte.gz: not found" in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nobody listens


def test_offline_message(tool, tmp_path: Path, capsys) -> None:
    for remote in tool.DATASETS["mnist"].files:
        remote.url = f"http://127.0.0.1:{closed_port()}/{remote.name}"
    rc = tool.main(["mnist", "--root", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "offline or unreachable" in err
    assert "python tools/install_datasets.py mnist --from DIR" in err


def test_unknown_dataset(tool, tmp_path: Path, capsys) -> None:
    assert tool.main(["imagenet", "--root", str(tmp_path)]) == 2
    assert "unknown data set 'imagenet'" in capsys.readouterr().err


class _RangeServer(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        data = self.files[self.path.lstrip("/")]
        header = self.headers.get("Range")
        self.ranges.append(header or "")
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args) -> None:
        pass


def test_download_resumes_with_range(tool, tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "server"
    write_mnist(source, gz=True, n_train=30)
    _RangeServer.files = {p.name: p.read_bytes() for p in source.iterdir()}
    _RangeServer.ranges = []
    server = HTTPServer(("127.0.0.1", 0), _RangeServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        point_at(tool, "mnist", source, f"http://127.0.0.1:{server.server_port}/")
        root = tmp_path / "root"
        downloads = root / ".downloads"
        downloads.mkdir(parents=True)
        # an interrupted earlier download: the first half of one file
        half = _RangeServer.files["train-images-idx3-ubyte.gz"]
        (downloads / "train-images-idx3-ubyte.gz.part").write_bytes(half[:len(half) // 2])
        monkeypatch.setattr("sys.stderr", io.StringIO())
        assert tool.main(["mnist", "--root", str(root), "-q"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert f"bytes={len(half) // 2}-" in _RangeServer.ranges
    assert (root / "mnist" / "train-images-idx3-ubyte.gz").read_bytes() == half


class _FlakyServer(BaseHTTPRequestHandler):
    """Serves ``data``: answers 416 to a Range at its end; with ``cut``, the first plain GET
    announces the whole length but sends only ``cut`` bytes (a dropped connection)."""

    data = b""
    cut: int | None = None

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        header = self.headers.get("Range")
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        if start >= len(self.data):
            self.send_response(416)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if header else 200)
        self.send_header("Content-Length", str(len(self.data) - start))
        self.end_headers()
        body = self.data[start:]
        if not header and _FlakyServer.cut is not None:
            body, _FlakyServer.cut = body[:_FlakyServer.cut], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_shared_download_detects_a_cut_and_resumes(tmp_path: Path) -> None:
    sys.path.insert(0, str(TOOL.parent))
    try:
        from _download import resume_download
    finally:
        sys.path.remove(str(TOOL.parent))
    _FlakyServer.data = bytes(range(256)) * 40  # 10240 bytes
    _FlakyServer.cut = 3000
    server = HTTPServer(("127.0.0.1", 0), _FlakyServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/f.bin"
    target = tmp_path / "f.bin"
    part = tmp_path / "f.bin.part"
    try:
        with pytest.raises(OSError, match="incomplete download"):  # kept for a resume
            resume_download(url, target, quiet=True)
        assert not target.exists() and part.read_bytes() == _FlakyServer.data[:3000]
        resume_download(url, target, quiet=True)
        assert target.read_bytes() == _FlakyServer.data and not part.exists()
        # a .part already whole: the server answers 416 to its Range, the file is complete
        part.write_bytes(_FlakyServer.data)
        target.unlink()
        resume_download(url, target, quiet=True)
        assert target.read_bytes() == _FlakyServer.data
    finally:
        server.shutdown()
        server.server_close()
