"""The zoo INIs of models/ONNX/: one per installable model, pointing where the installer puts
the file, and (with a zoo-shaped stand-in for the file) building the intended network."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers import make_tiny_imagenet, resnet18v1  # noqa: E402

from n2q.config import load_config  # noqa: E402
from n2q.net import build_network  # noqa: E402

ROOT = Path(__file__).parents[1]
INIS = sorted((ROOT / "models" / "ONNX").glob("*.ini"))


def installer():
    spec = importlib.util.spec_from_file_location("install_onnx_models_for_inis",
                                                  ROOT / "tools" / "install_onnx_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_one_ini_per_installable_model() -> None:
    names = sorted(installer().MODELS)
    assert sorted(p.name.removesuffix("-onnx.ini") for p in INIS) == names


@pytest.mark.parametrize("ini", INIS, ids=lambda p: p.name)
def test_ini_points_where_the_installer_installs(ini: Path, tmp_path: Path,
                                                 monkeypatch) -> None:
    monkeypatch.setenv("N2Q_MODELS", str(tmp_path))
    tool = installer()
    model = tool.MODELS[ini.name.removesuffix("-onnx.ini")]
    cfg = load_config(ini)
    onnx_section = cfg["onnx"]
    assert onnx_section.str("Type") == "ONNX"
    assert onnx_section.path("File") == tool.target_path(tmp_path, model)
    assert cfg["database"].str("Type") == "ILSVRC2012_Database"
    sp = cfg["sp"]
    assert (sp.int("SizeX"), sp.int("SizeY"), sp.int("NbChannels")) == (224, 224, 3)
    targets = [s.name for s in cfg.sections if s.name.endswith(".Target")]
    assert len(targets) == 1 and cfg[targets[0]].int("TopN") == 5
    # the training keys resolve (no undefined variable, unlike N2D2's [common.config])
    cfg.set_generated("sp", "_EpochSize", 1000)
    assert cfg["train.config"].float("Solvers.LearningRateStepSize") == 10000
    assert cfg["train.config"].float("Solvers.LearningRateDecay") == 0.1


def test_resnet18v1_ini_builds_with_a_zoo_shaped_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("N2Q_MODELS", str(tmp_path))
    target = tmp_path / "ONNX" / "resnet-18-v1" / "resnet18v1.onnx"
    target.parent.mkdir(parents=True)
    onnx.save(resnet18v1(size=224, classes=1000, widths=(4, 4, 8, 8)), str(target))
    net = build_network(load_config(ROOT / "models" / "ONNX" / "resnet-18-v1-onnx.ini"),
                        (3, 224, 224), quantize=False)
    assert [t.cell for t in net.targets] == ["softmax"]
    assert net.inputs["softmax"] == ["resnetv15_dense0_fwd"]
    conv = net.cells["resnetv15_stage3_conv1_fwd"]
    assert conv.section.float("Solvers.LearningRate") == 0.001   # via [onnx:Conv_def]
    assert net.cells["resnetv15_dense0_fwd"].out_shape[0] == 1000


def test_mobilenetv2_ini_builds_with_a_zoo_shaped_file(tmp_path: Path, monkeypatch) -> None:
    from helpers import mobilenetv2_like

    monkeypatch.setenv("N2Q_MODELS", str(tmp_path))
    target = tmp_path / "ONNX" / "mobilenetv2" / "mobilenetv2-1.0.onnx"
    target.parent.mkdir(parents=True)
    onnx.save(mobilenetv2_like(size=224, classes=1000), str(target))
    net = build_network(load_config(ROOT / "models" / "ONNX" / "mobilenetv2-onnx.ini"),
                        (3, 224, 224), quantize=False)
    assert net.inputs["softmax"] == ["mobilenetv20_output_pred_fwd"]
    assert net.cells["mobilenetv20_output_pred_fwd"].out_shape == (1000, 1, 1)
    dw = net.cells["mobilenetv20_features_linearbottleneck1_conv1_fwd"]
    assert dw.section.float("Solvers.LearningRate") == 0.001 and dw.groups == 96


def test_resnet18v1_ini_tests_on_an_imagenet_folder(tmp_path: Path, monkeypatch,
                                                    capsys) -> None:
    """``n2q models/ONNX/resnet-18-v1-onnx.ini -test`` end to end (provider, import, test
    report), on a zoo-shaped stand-in and 6 validation images."""
    from n2q.cli import main

    monkeypatch.setenv("N2Q_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("N2Q_DATA", str(tmp_path / "data"))
    wnids = tuple(f"n{i:08d}" for i in range(1000))
    make_tiny_imagenet(tmp_path / "data" / "ILSVRC2012", wnids, per_class=0, n_val=6)
    target = tmp_path / "models" / "ONNX" / "resnet-18-v1" / "resnet18v1.onnx"
    target.parent.mkdir(parents=True)
    onnx.save(resnet18v1(size=224, classes=1000, widths=(4, 4, 8, 8)), str(target))
    monkeypatch.chdir(tmp_path)
    assert main([str(ROOT / "models" / "ONNX" / "resnet-18-v1-onnx.ini"), "-test"]) == 0
    out = capsys.readouterr().out
    assert "Final recognition rate:" in out
    assert (tmp_path / "softmax.Target" / "ConfusionMatrix_test.dat").is_file()


def test_n2d2_zoo_inis_find_the_installed_files(reference: Path, tmp_path: Path,
                                                monkeypatch) -> None:
    """N2D2's own models/ONNX/*.ini read ${N2D2_MODELS}: the installer's layout is theirs."""
    monkeypatch.setenv("N2D2_MODELS", str(tmp_path))
    tool = installer()
    inis = sorted((reference / "n2d2-models" / "ONNX").glob("*.ini"))
    checked = 0
    for ini in inis:
        name = ini.name.removesuffix("-onnx.ini")
        if name not in tool.MODELS:   # inceptionv2: never offered by N2D2's installer
            continue
        assert load_config(ini)["onnx"].path("File") == tool.target_path(tmp_path,
                                                                        tool.MODELS[name])
        checked += 1
    assert checked == len(tool.MODELS)


def test_n2d2_resnet18v1_ini_runs_unchanged(reference: Path, tmp_path: Path,
                                            monkeypatch) -> None:
    monkeypatch.setenv("N2D2_MODELS", str(tmp_path))
    target = tmp_path / "ONNX" / "resnet-18-v1" / "resnet18v1.onnx"
    target.parent.mkdir(parents=True)
    onnx.save(resnet18v1(size=224, classes=1000, widths=(4, 4, 8, 8)), str(target))
    cfg = load_config(reference / "n2d2-models" / "ONNX" / "resnet-18-v1-onnx.ini")
    net = build_network(cfg, (3, 224, 224), quantize=False)
    assert [t.cell for t in net.targets] == ["resnetv15_dense0_fwd"]
    assert net.targets[0].top_n == 5
    assert "common.config" in cfg.unused_sections()   # its ${STEPDECAY_RATE} is never read
