"""N2D2's own model files (``$N2Q_TEST_REFERENCE/n2d2-models``) all load, templates expanded,
and every key of every section resolves, except the traps documented in spec/ini.md, which give
their exact clear errors at the right line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from n2q.config import Config, load_config
from n2q.errors import UserError

_ROOT = Path(os.environ.get("N2Q_TEST_REFERENCE") or "/nonexistent") / "n2d2-models"
INIS = sorted(str(p.relative_to(_ROOT)) for p in _ROOT.rglob("*.ini")) if _ROOT.is_dir() else []
NO_CORPUS = pytest.mark.skip(reason="N2D2 reference corpus not available: set "
                                    "N2Q_TEST_REFERENCE")
CELL_KEYS = ("_NbChannels", "_ChannelsWidth", "_ChannelsHeight", "_NbOutputs", "_OutputsWidth",
             "_OutputsHeight")

# name -> (message regex, which (section, key, raw value) must fail with it)
_UNDEFINED_STEPDECAY = r"undefined variable \$\{STEPDECAY_RATE\} \(did you mean \$STEP_DECAY_RATE"
TRAPS = {
    "ResNet-18-BN.ini": (r"refers to \[sp\]Size[XY] but there is no \[sp\] section",
                         lambda sec, key, raw: "[sp]Size" in raw),
    "VGG16.ini": (_UNDEFINED_STEPDECAY,
                  lambda sec, key, raw: key == "Solvers.LearningRateDecay"),
}
for _name in INIS:
    if _name.startswith("ONNX/"):  # an unreferenced [common.config] with the same mistake
        TRAPS[_name] = (_UNDEFINED_STEPDECAY,
                        lambda sec, key, raw: key == "Solvers.LearningRateDecay")


def provide_generated(cfg: Config) -> None:
    """What the data base and the net builder publish, with plausible values."""
    cfg.set_generated("sp", "_EpochSize", 6400)
    for sec in cfg.sections:
        for key in CELL_KEYS:
            cfg.set_generated(sec.name, key, 8)
        if sec.name.startswith("sp.StimuliData"):
            for stat, value in (("mean", 0.13), ("stdDev", 0.31), ("minVal", 0.0),
                                ("maxVal", 1.0)):
                cfg.set_generated(sec.name, f"_GlobalValue.{stat}", value)


def read_everything(cfg: Config) -> dict[tuple[str, str], UserError]:
    errors = {}
    for sec in [cfg.globals, *cfg.sections]:
        for key in sec.keys():
            try:
                sec.str(key)
            except UserError as err:
                errors[(sec.name, key)] = err
    return errors


@pytest.fixture
def corpus(monkeypatch: pytest.MonkeyPatch) -> Path:
    # the models refer to ${N2D2_MODELS}/...: a user of them sets it to the models folder
    monkeypatch.setenv("N2Q_MODELS", str(_ROOT))
    return _ROOT


@pytest.mark.parametrize("name", INIS or [pytest.param("none", marks=NO_CORPUS)])
def test_every_ini_loads_and_resolves(corpus: Path, name: str) -> None:
    cfg = load_config(corpus / name)
    assert cfg.sections, "no section read"
    provide_generated(cfg)
    errors = read_everything(cfg)
    pattern, expected = TRAPS.get(name, ("", lambda sec, key, raw: False))
    for sec in [cfg.globals, *cfg.sections]:
        for key in sec.keys():
            raw = sec.entry(key).value
            err = errors.get((sec.name, key))
            if expected(sec, key, raw):
                assert err is not None, f"[{sec.name}] {key}={raw} should fail"
                assert re.search(pattern, err.message), str(err)
                assert (err.file, err.line) == sec.line_of(key)  # at the line where written
            else:
                assert err is None, str(err)


@pytest.mark.skipif(not INIS, reason="N2D2 reference corpus not available: set "
                                     "N2Q_TEST_REFERENCE")
class TestTraps:
    def test_resnet18_bn_sp_sizex(self, corpus: Path) -> None:
        path = corpus / "ResNet-18-BN.ini"
        cfg = load_config(path)
        assert "sp" not in cfg
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                    if text.startswith("Width=[sp]SizeX"))
        with pytest.raises(UserError, match="^" + re.escape(
                f"{path}:{line}: [sp.Transformation-6] Width: refers to [sp]SizeX but there is "
                "no [sp] section: add a [sp] section")):
            cfg["sp.Transformation-6"].int("Width")

    def test_vgg16_undefined_variable_when_read(self, corpus: Path) -> None:
        path = corpus / "VGG16.ini"
        cfg = load_config(path)
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                    if text.startswith("Solvers.LearningRateDecay="))
        cfg["conv1_1"].int("NbOutputs")  # other keys of the same cell are fine
        with pytest.raises(UserError, match="^" + re.escape(
                f"{path}:{line}: [conv1_1] Solvers.LearningRateDecay: undefined variable "
                "${STEPDECAY_RATE} (did you mean $STEP_DECAY_RATE?)")):
            cfg["conv1_1"].float("Solvers.LearningRateDecay")

    def test_onnx_unreferenced_config_is_only_unused(self, corpus: Path) -> None:
        cfg = load_config(corpus / "ONNX" / "resnet-18-v1-onnx.ini")
        provide_generated(cfg)
        for sec in cfg.sections:
            if sec.name != "common.config":
                for key in sec.keys():
                    sec.str(key)
        assert "common.config" in cfg.unused_sections()

    def test_lenet_quant_just_loads(self, corpus: Path) -> None:
        # its obsolete keys are the net builder's business (unknown key for a cell)
        cfg = load_config(corpus / "LeNet_quant.ini")
        owners = [s.name for s in cfg.sections if "ActivationFunction.QuantizationLevels" in s]
        assert owners
        assert cfg[owners[0]].int("ActivationFunction.QuantizationLevels") > 1

    def test_lenet_mapping_and_transformation_names(self, corpus: Path) -> None:
        cfg = load_config(corpus / "LeNet.ini")
        mapping = cfg["conv2"].ints("Mapping(pool1)")
        assert len(mapping) == 6 * 16 and set(mapping) == {0, 1}
        assert "sp.Transformation_1" in cfg

    def test_resnet18_templates(self, corpus: Path) -> None:
        cfg = load_config(corpus / "ResNet-18.ini")
        names = [s.name for s in cfg.sections]
        blocks = [n for n in names if n.endswith("_sum")]
        assert blocks == [f"conv{i}.{j}_sum" for i in range(2, 6) for j in (1, 2)]
        # projection shortcuts only where PROJECTION_SHORTCUT=1
        assert [n for n in names if n.endswith("_1x1_proj")] == [
            "conv2.1_1x1_proj", "conv3.1_1x1_proj", "conv4.1_1x1_proj", "conv5.1_1x1_proj"]
        assert cfg["conv3.1_sum"].str("Input") == "conv3.1_3x3_2,conv3.1_1x1_proj"
        assert cfg["conv3.2_sum"].str("Input") == "conv3.2_3x3_2,conv3.1_sum"
        assert cfg["conv4.1_3x3_1"].int("NbOutputs") == 256
        assert cfg["conv4.1_3x3_1"].int("Stride") == 2
        assert cfg["conv4.1_3x3_1"].float("WeightsFiller.Scaling") == pytest.approx(8 ** -0.5)
        assert cfg["conv4.1_3x3_2"].float("WeightsFiller.Scaling") == 0.0
        assert cfg["conv4.1_3x3_1"].str("Type") == "Conv"  # base conv_def of the INI
        assert cfg["conv4.1_3x3_1"].str("ConfigSection") == "common.config"
        assert cfg["pool"].str("Input") == "conv5.2_sum"

    def test_mobilenet_v2_templates(self, corpus: Path) -> None:
        cfg = load_config(corpus / "MobileNet_v2.ini")
        names = [s.name for s in cfg.sections]
        assert "conv3.2_sum" in names and "conv3.1_sum" not in names  # only with RESIDUAL
        # NbOutputs=$([{{INPUT}}]NbOutputs * {{EXPANSION}}), ALPHA=0.5, EXPANSION=6:
        # conv3.2's input conv3.1_1x1_linear has int(24 * 0.5) = 12 outputs -> 72
        assert cfg["conv3.2_1x1"].int("NbOutputs") == 72
        assert cfg["conv2.1_1x1"].int("NbOutputs") == 16  # conv1: int(32 * 0.5), EXPANSION=1
        assert cfg["conv3.2_sum"].str("Input") == "conv3.2_1x1_linear,conv3.1_1x1_linear"
        assert cfg["conv3.2_3x3"].int("Mapping.ChannelsPerGroup") == 1


@pytest.mark.skipif(not INIS, reason="N2D2 reference corpus not available: set "
                                     "N2Q_TEST_REFERENCE")
def test_templates_found_next_to_the_ini_without_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("N2Q_MODELS", "N2D2_MODELS"):
        monkeypatch.delenv(name, raising=False)
    for ini in ("ResNet-18.ini", "ResNet-34.ini", "ResNet-50.ini", "ResNet-18-BN.ini",
                "ResNet-50-BN.ini", "ResNet-11.ini", "MobileNet_v2.ini"):
        cfg = load_config(_ROOT / ini)
        rendered = [s for s in cfg.sections if s.parent is not None]
        assert rendered, ini
        assert all(Path(s.file).suffix == ".tpl" for s in rendered), ini
