"""``-export`` on the command line (cli.md): N2D2's other export types are one line naming ONNX
(exit 2, nothing written), and ``n2q exported.onnx -test`` reads a float export back with the
same predictions on the real MNIST test digits (the network's provider is the one n2q gives a
1x28x28 ONNX file: MNIST, no transformation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from n2q import cli

NET = """
[database]
Type=MNIST_IDX_Database
Validation=0.1

[sp]
SizeX=28
SizeY=28
BatchSize=64

[conv1]
Input=sp
Type=Conv
KernelDims=5 5
NbOutputs=6
Stride=2
ActivationFunction=Rectifier

[bn1]
Input=conv1
Type=BatchNorm
ActivationFunction=Linear

[pool1]
Input=bn1
Type=Pool
PoolDims=2 2
Stride=2
Pooling=Max
Mapping.Size=1

[fc1]
Input=pool1
Type=Fc
NbOutputs=10

[softmax]
Input=fc1
Type=Softmax
WithLoss=1

[softmax.Target]
"""


@pytest.mark.parametrize("kind", ["CPP", "CPP_TensorRT", "C_HLS"])
def test_other_export_types_are_refused_naming_onnx(kind: str, tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.ini").write_text(NET)
    assert cli.main(["net.ini", "-test", "-export", kind]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"Error: -export {kind}: not supported by n2q; the supported export type "
                   "is ONNX (-export ONNX)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.ini"]


def rate_and_matrix(folder: Path, out: str) -> tuple[str, str]:
    rate = next(line for line in out.splitlines() if line.startswith("Final recognition"))
    return rate, (folder / "softmax.Target" / "ConfusionMatrix_test.dat").read_text()


@pytest.mark.slow
def test_float_export_reads_back_with_the_same_predictions(test_data: Path, tmp_path: Path,
                                                           monkeypatch, capsys) -> None:
    monkeypatch.setenv("N2Q_DATA", str(test_data))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.ini").write_text(NET)
    assert cli.main(["net.ini", "-learn", "1024", "-log", "1024", "-seed", "2", "-test",
                     "-export", "ONNX"]) == 0
    first = rate_and_matrix(tmp_path, capsys.readouterr().out)
    assert (tmp_path / "export_ONNX" / "net.onnx").is_file()
    again = tmp_path / "again"
    again.mkdir()
    monkeypatch.chdir(again)
    assert cli.main([str(tmp_path / "export_ONNX" / "net.onnx"), "-test", "-seed", "2"]) == 0
    second = rate_and_matrix(again, capsys.readouterr().out)
    assert second == first
    assert float(first[0].split()[3].rstrip("%")) > 50      # it learned: not a constant net


@pytest.mark.slow
def test_learn_then_export_exports_the_best_weights(tmp_path: Path, monkeypatch,
                                                    capsys) -> None:
    """-learn ... -export ONNX without -test: the export reloads this run's best weights
    (weights_validation/), so the exported Gemm weights are those of that folder."""
    import numpy as np
    import onnx
    from helpers import make_tiny_workdir, n2q, write_net
    from onnx import numpy_helper

    work = make_tiny_workdir(tmp_path, monkeypatch)
    ini = write_net(work)
    assert n2q(ini, "-learn", "384", "-log", "96", "-seed", "1", "-export", "ONNX") == 0
    out = capsys.readouterr().out
    assert "Importing weights from directory 'weights_validation'." in out
    assert "Exported the float ONNX model to export_ONNX/tiny.onnx" in out
    model = onnx.load(str(work / "export_ONNX" / "tiny.onnx"))
    exported = numpy_helper.to_array(next(i for i in model.graph.initializer
                                          if i.name == "fc2/weight"))
    saved = np.loadtxt(work / "weights_validation" / "fc2_weights.syntxt", ndmin=2)
    assert exported.shape == saved.shape and np.allclose(exported, saved, atol=1e-6)
