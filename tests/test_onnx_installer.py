"""tools/install_onnx_models.py, offline: a local HTTP server (with Range support) stands in for
the zoo, and --from installs already-downloaded files."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import mobilenetv2_like  # noqa: E402

TOOL = Path(__file__).parents[1] / "tools" / "install_onnx_models.py"


@pytest.fixture
def tool():
    spec = importlib.util.spec_from_file_location("install_onnx_models", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def model_bytes() -> bytes:
    return mobilenetv2_like().SerializeToString()


class ZooServer:
    """Serves ``files`` (name -> bytes) and records the Range headers it receives."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.ranges = files, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                data = server.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                wanted = self.headers.get("Range")
                server.ranges.append(wanted)
                start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
                self.send_response(206 if wanted else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def zoo(model_bytes: bytes):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("tiny/model.onnx")
        info.size = len(model_bytes)
        tar.addfile(info, io.BytesIO(model_bytes))
    server = ZooServer({"tiny-7.onnx": model_bytes, "tiny-9.tar.gz": archive.getvalue()})
    yield server
    server.close()


def manifest(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(entries))
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny(url: str, data: bytes, **extra) -> dict:
    return {"name": "tiny", "file": "tiny-7.onnx", "urls": [url],
            "install_as": "tiny.onnx", "sha256": [sha(data)], "size": len(data), **extra}


def test_list_names_every_zoo_model(tool, capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("N2Q_MODELS", str(tmp_path))
    assert tool.main(["--list"]) == 0
    out = capsys.readouterr().out
    expected = ["googlenet", "mobilenetv2", "squeezenet", "vgg16", "vgg16-bn", "vgg19",
                "vgg19-bn"] + [f"resnet-{d}-v{v}" for d in (18, 34, 50, 101, 152)
                               for v in (1, 2)]
    assert sorted(tool.MODELS) == sorted(expected)
    for name in expected:
        assert f"  {name} " in out
    assert str(tmp_path) in out and "ONNX/resnet-18-v1/resnet18v1.onnx" in out


def test_download_verify_install_then_already_installed(tool, zoo, tmp_path, capsys,
                                                        model_bytes) -> None:
    m = manifest(tmp_path, [tiny(f"{zoo.url}/tiny-7.onnx", model_bytes)])
    dest = tmp_path / "models"
    assert tool.main(["tiny", "--dest", str(dest), "--manifest", str(m)]) == 0
    target = dest / "ONNX" / "tiny" / "tiny.onnx"
    assert target.read_bytes() == model_bytes
    sums = (target.parent / "SHA256SUMS").read_text()
    assert f"{sha(model_bytes)}  tiny.onnx" in sums
    assert not (target.parent / "tiny-7.onnx").exists()   # the download is not kept
    assert tool.main(["tiny", "--dest", str(dest), "--manifest", str(m)]) == 0
    assert "already installed" in capsys.readouterr().out
    assert zoo.ranges == [None]   # fetched once


def test_resumes_a_partial_download_with_a_range_request(tool, zoo, tmp_path,
                                                         model_bytes) -> None:
    m = manifest(tmp_path, [tiny(f"{zoo.url}/tiny-7.onnx", model_bytes)])
    folder = tmp_path / "models" / "ONNX" / "tiny"
    folder.mkdir(parents=True)
    half = len(model_bytes) // 2
    (folder / "tiny-7.onnx.part").write_bytes(model_bytes[:half])
    assert tool.main(["tiny", "--dest", str(tmp_path / "models"), "--manifest", str(m)]) == 0
    assert zoo.ranges == [f"bytes={half}-"]
    assert (folder / "tiny.onnx").read_bytes() == model_bytes


def test_checksum_mismatch_installs_nothing(tool, zoo, tmp_path, capsys, model_bytes) -> None:
    entry = tiny(f"{zoo.url}/tiny-7.onnx", model_bytes, sha256=["0" * 64])
    m = manifest(tmp_path, [entry])
    dest = tmp_path / "models"
    assert tool.main(["tiny", "--dest", str(dest), "--manifest", str(m)]) == 2
    err = capsys.readouterr().err
    assert "error: tiny: checksum mismatch" in err and "--trust-new-checksum" in err
    assert not (dest / "ONNX" / "tiny" / "tiny.onnx").exists()
    assert tool.main(["tiny", "--dest", str(dest), "--manifest", str(m),
                      "--trust-new-checksum"]) == 0
    assert (dest / "ONNX" / "tiny" / "tiny.onnx").read_bytes() == model_bytes


def test_offline_gives_a_clear_message(tool, tmp_path, capsys, model_bytes) -> None:
    m = manifest(tmp_path, [tiny("http://127.0.0.1:9/tiny-7.onnx", model_bytes)])
    dest = tmp_path / "models"
    assert tool.main(["tiny", "--dest", str(dest), "--manifest", str(m)]) == 2
    err = capsys.readouterr().err
    assert "cannot download tiny-7.onnx" in err and "Offline?" in err and "--from DIR" in err
    assert err.count("\n") == 1
    assert not dest.exists()   # nothing half-made: no empty ONNX/tiny/ folder either
    (dest / "ONNX").mkdir(parents=True)   # folders the user had are kept
    assert tool.main(["tiny", "--dest", str(dest), "--manifest", str(m)]) == 2
    assert sorted(p.name for p in dest.rglob("*")) == ["ONNX"]


def test_from_folder_extracts_the_onnx_of_an_archive(tool, zoo, tmp_path, model_bytes) -> None:
    downloads = tmp_path / "downloads" / "sub"
    downloads.mkdir(parents=True)
    archive = zoo.files["tiny-9.tar.gz"]
    (downloads / "tiny-9.tar.gz").write_bytes(archive)
    entry = {"name": "tiny", "file": "tiny-9.tar.gz", "urls": ["http://127.0.0.1:9/x"],
             "install_as": "tiny/model.onnx", "sha256": [sha(archive)]}
    m = manifest(tmp_path, [entry])
    dest = tmp_path / "models"
    assert tool.main(["tiny", "--dest", str(dest), "--manifest", str(m), "--from",
                      str(tmp_path / "downloads")]) == 0
    installed = dest / "ONNX" / "tiny" / "tiny" / "model.onnx"
    assert installed.read_bytes() == model_bytes
    onnx.checker.check_model(onnx.load(str(installed)))
    assert (downloads / "tiny-9.tar.gz").exists()   # --from never deletes the user's files


def test_user_errors_exit_2(tool, tmp_path, capsys) -> None:
    assert tool.main(["resnet-19-v1", "--dest", str(tmp_path)]) == 2
    assert "did you mean resnet-18-v1" in capsys.readouterr().err
    assert tool.main(["--dest", str(tmp_path)]) == 2
    assert tool.main(["resnet-18-v1", "--from", str(tmp_path / "none")]) == 2
    assert tool.main(["resnet-18-v1", "--dest", str(tmp_path), "--from", str(tmp_path)]) == 2
    assert "none of" in capsys.readouterr().err


def test_not_an_onnx_file_is_refused(tool, tmp_path, capsys) -> None:
    data = b"<html>rate limited</html>"
    (tmp_path / "tiny-7.onnx").write_bytes(data)
    m = manifest(tmp_path, [tiny("http://127.0.0.1:9/x", data)])
    assert tool.main(["tiny", "--dest", str(tmp_path / "m"), "--manifest", str(m), "--from",
                      str(tmp_path)]) == 2
    assert "not a valid ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "m" / "ONNX" / "tiny" / "tiny.onnx").exists()
