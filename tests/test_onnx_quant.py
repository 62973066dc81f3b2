"""QAT recipes on an imported ONNX ResNet-18 v1 (seed 004's SAT tutorial, N2D2's LSQ 8-bit
INI): quantizers land on exactly the cells the INI names, and a few learning steps run on a
tiny ImageNet-shaped folder made here."""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import WIDTHS, make_tiny_imagenet, resnet18v1, sat_ini  # noqa: E402

from n2q.cli import main  # noqa: E402
from n2q.config import load_config  # noqa: E402
from n2q.net import build_network  # noqa: E402

WNIDS = ("n01440764", "n01443537", "n01484850")


@pytest.fixture
def tiny_imagenet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$N2Q_DATA/ILSVRC2012 with 3 classes x 6 train JPEGs, 6 val JPEGs; cwd = tmp_path."""
    make_tiny_imagenet(tmp_path / "data" / "ILSVRC2012", WNIDS)
    monkeypatch.setenv("N2Q_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# The seed's tutorial (ResNet-18 SAT), at 64x64 for speed; step 1 clamps, step 2 quantizes.


def quantizers(ini: Path, shape: tuple[int, int, int]) -> dict[str, tuple]:
    net = build_network(load_config(ini), shape, quantize=True)
    return {name: (type(c.weight_quantizer).__name__ if c.weight_quantizer else None,
                   getattr(c.weight_quantizer, "range", None),
                   type(c.act_quantizer).__name__ if c.act_quantizer else None,
                   getattr(c.act_quantizer, "range", None)) for name, c in net.cells.items()}


def expected_quantizers(kind: str, weight_range, act_range, first_last_range) -> dict:
    model = resnet18v1(size=64, classes=3, widths=WIDTHS)
    out = {}
    relu_inputs = {n.input[0] for n in model.graph.node if n.op_type == "Relu"}
    for node in model.graph.node:
        name = node.output[0]
        if node.op_type in ("Relu", "Flatten"):
            continue
        w = (f"{kind}Weight", first_last_range if name in ("resnetv15_conv0_fwd",
                                                          "resnetv15_dense0_fwd")
             else weight_range) if node.op_type in ("Conv", "Gemm") else (None, None)
        a = (f"{kind}Act", act_range) if act_range and name in relu_inputs else (None, None)
        out[name] = (*w, *a)
    out["soft1"] = (None, None, None, None)
    return out


def test_seed_sat_recipe_puts_quantizers_on_the_named_cells(tmp_path: Path) -> None:
    clamp = quantizers(sat_ini(tmp_path, quantize=False), (3, 64, 64))
    assert clamp == expected_quantizers("SAT", 255, None, 255)   # QWeight.Range default
    quant = quantizers(sat_ini(tmp_path, quantize=True), (3, 64, 64))
    assert quant == expected_quantizers("SAT", 15, 15, 255)
    assert sum(a == "SATAct" for _, _, a, _ in quant.values()) == 17


@pytest.mark.slow
def test_seed_sat_workflow_clamp_then_quantize_learns(tiny_imagenet: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """The seed's two steps: learn with clamped weights, then 4-bit SAT from those weights."""
    clamp = sat_ini(tiny_imagenet, quantize=False)
    assert main([str(clamp), "-learn", "4", "-log", "4", "-seed", "1"]) == 0
    assert (tiny_imagenet / "weights_validation").is_dir()
    quant = sat_ini(tiny_imagenet, quantize=True)
    assert main([str(quant), "-learn", "4", "-log", "4", "-seed", "1", "-w",
                 "weights_validation", "-test"]) == 0
    out = capsys.readouterr().out
    assert "Final recognition rate:" in out


def lsq_ini(folder: Path, reference: Path) -> Path:
    """N2D2's own quantizer/resnet-18v1-LSQ-8b.ini, with only its batch size cut from 256 to
    4 (the test folder holds 18 images); its resnet18v1.onnx is a zoo-shaped stand-in."""
    text = (reference / "n2d2-models" / "quantizer" / "resnet-18v1-LSQ-8b.ini").read_text()
    assert "BatchSize=256" in text
    ini = folder / "resnet-18v1-LSQ-8b.ini"
    ini.write_text(text.replace("BatchSize=256", "BatchSize=4"))
    model = resnet18v1(size=224, classes=1000, widths=(4, 4, 8, 8))
    onnx.save(model, str(folder / "resnet18v1.onnx"))
    return ini


def test_n2d2_lsq_8bit_recipe_puts_quantizers_on_the_named_cells(tmp_path: Path,
                                                                 reference: Path) -> None:
    found = quantizers(lsq_ini(tmp_path, reference), (3, 224, 224))
    assert found == expected_quantizers("LSQ", 255, 255, 255)


@pytest.mark.slow
def test_n2d2_lsq_8bit_recipe_learns(tiny_imagenet: Path, reference: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    ini = lsq_ini(tiny_imagenet, reference)
    torch.manual_seed(0)
    assert main([str(ini), "-learn", "4", "-log", "4", "-seed", "2"]) == 0
    assert (tiny_imagenet / "weights_validation").is_dir()
    assert "validation score" in capsys.readouterr().out


# -- the recipes of configs/ (written for n2q, same cells as above) ------------------------------
CONFIGS = Path(__file__).parents[1] / "configs"


def zoo_stand_in(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$N2Q_MODELS/ONNX/resnet-18-v1/resnet18v1.onnx: the zoo's structure, narrow layers."""
    target = models / "ONNX" / "resnet-18-v1" / "resnet18v1.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(resnet18v1(size=224, classes=1000, widths=(4, 4, 8, 8)), str(target))
    monkeypatch.setenv("N2Q_MODELS", str(models))


@pytest.mark.parametrize("recipe,expected", [
    ("resnet18-v1_SAT_clamp.ini", ("SAT", 255, None, 255)),
    ("resnet18-v1_SAT_W4A4.ini", ("SAT", 15, 15, 255)),
    ("resnet18-v1_LSQ_8b.ini", ("LSQ", 255, 255, 255)),
])
def test_configs_recipes_put_quantizers_on_the_named_cells(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recipe: str, expected: tuple) -> None:
    zoo_stand_in(tmp_path, monkeypatch)
    assert quantizers(CONFIGS / recipe, (3, 224, 224)) == expected_quantizers(*expected)


@pytest.mark.slow
def test_configs_lsq_recipe_learns(tiny_imagenet: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    zoo_stand_in(tiny_imagenet / "models", monkeypatch)
    text = (CONFIGS / "resnet18-v1_LSQ_8b.ini").read_text()
    assert "BatchSize=256" in text
    ini = tiny_imagenet / "lsq.ini"   # the folder holds 18 images: batches of 4
    ini.write_text(text.replace("BatchSize=256", "BatchSize=4"))
    assert main([str(ini), "-learn", "4", "-log", "4", "-seed", "3"]) == 0
    assert "validation score" in capsys.readouterr().out
