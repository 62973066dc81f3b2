"""spec/ini.md, Sections and ConfigSection: bases, overrides, duplicates, merged view, checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import n2q.errors
from n2q.config import load_config
from n2q.errors import UserError


def write(tmp_path: Path, text: str, name: str = "net.ini") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def located(path: Path, line: int, rest: str) -> str:
    return "^" + re.escape(f"{path}:{line}: ") + rest


BASES = """\
[Conv_def]
Type=Conv
ActivationFunction=Rectifier
$W=3
[Other_def]
Type=Other
Stride=2
[conv1] Conv_def Other_def
Input=sp
ActivationFunction=Linear
[onnx:Conv_def]Conv_def
[x.y:z] onnx:Conv_def
"""


def test_header_name_and_bases(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASES))
    assert cfg["conv1"].bases == ["Conv_def", "Other_def"]
    assert cfg["onnx:Conv_def"].bases == ["Conv_def"]  # ':' is an ordinary character
    assert cfg["x.y:z"].bases == ["onnx:Conv_def"]
    assert (cfg["conv1"].file, cfg["conv1"].line) == (str(tmp_path / "net.ini"), 8)


def test_bases_first_listed_wins_body_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASES))
    conv1 = cfg["conv1"]
    assert conv1.str("Type") == "Conv"  # Conv_def listed first wins over Other_def
    assert conv1.int("Stride") == 2  # only in the second base: still inherited
    assert conv1.str("ActivationFunction") == "Linear"  # the body overrides the base
    assert conv1.variables["W"].value == "3"  # variables are inherited too
    # inherited keys report the line where they were written (in the base)
    assert conv1.line_of("Type")[1] == 2
    assert conv1.line_of("Stride")[1] == 7
    assert conv1.line_of("Input")[1] == 9
    assert cfg["x.y:z"].str("Type") == "Conv"  # inheritance chains


def test_base_must_be_defined_earlier(tmp_path: Path) -> None:
    path = write(tmp_path, "[conv1] Conv_def\nInput=sp\n[Conv_def]\nType=Conv\n")
    with pytest.raises(UserError, match=located(
            path, 1, r"\[conv1\] base section \[Conv_def\] is not defined before this header")):
        load_config(path)


def test_duplicate_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[a]\nX=1\n\n[a]\nX=2\n")
    with pytest.raises(UserError, match=located(
            path, 4, rf"\[a\] section defined twice \(first at {re.escape(str(path))}:1\)")):
        load_config(path)


def test_duplicate_key_in_one_body_warns(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[a]\nX=1\nX=2\n")
    cfg = load_config(path)
    err = capsys.readouterr().err
    assert f"Warning: {path}:3: [a] X: overriding property X (previous value was 1)" in err
    assert cfg["a"].int("X") == 2  # the last one wins, as in N2D2


def test_inherited_override_is_debug_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("N2Q_DEBUG", raising=False)
    monkeypatch.setattr(n2q.errors, "DEBUG", False)
    load_config(write(tmp_path, BASES))
    assert capsys.readouterr().err == ""  # overriding a base's key is the point of bases
    monkeypatch.setattr(n2q.errors, "DEBUG", True)
    load_config(write(tmp_path, BASES))
    err = capsys.readouterr().err
    assert "Debug: " in err
    assert ("[conv1] ActivationFunction: overriding property ActivationFunction (previous "
            "value was Rectifier)") in err
    assert "Warning" not in err


def test_global_section_and_variables(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "$A=1\nDefaultModel=Frame\n[s]\nK=v\n"))
    assert cfg.globals.keys() == ["DefaultModel"]
    assert cfg.globals.variables["A"].value == "1"
    assert "DefaultModel" not in cfg["s"]
    assert [s.name for s in cfg.sections] == ["s"]  # the global section is not listed


def test_config_api_lookup(tmp_path: Path) -> None:
    path = write(tmp_path, "[a]\nX=1\n")
    cfg = load_config(path)
    assert "a" in cfg and "b" not in cfg
    assert cfg.get("b") is None
    with pytest.raises(UserError, match=r"missing section \[b\]"):
        cfg["b"]  # noqa: B018
    # a missing section that some value refers to: the error points at that value
    path = write(tmp_path, "[a]\nX=[sp]SizeX\n")
    with pytest.raises(UserError, match=located(path, 2, r"\[a\] X: refers to \[sp\] but "
                                                r"there is no \[sp\] section")):
        load_config(path)["sp"]
    with pytest.raises(UserError, match=located(path, 1, r"\[a\] missing key Y: add Y=")):
        cfg["a"].str("Y")
    assert cfg["a"].str("Y", "dflt") == "dflt"
    assert cfg["a"].int("Y", None) is None


CONFIG_SECTIONS = """\
[conv1]
Input=sp
Type=Conv
NoBias=0
ConfigSection=common.config, fc.config
[common.config]
NoBias=1
WeightsSolver.LearningRate=0.1
Solvers.Momentum=0.9
[fc.config]
WeightsSolver.LearningRate=0.2
[bad]
ConfigSection=common.config,nowhere.config
"""


def test_config_section_merging(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, CONFIG_SECTIONS))
    conv1 = cfg["conv1"]
    assert conv1.bool("NoBias") is False  # the cell section wins over its ConfigSection
    assert conv1.float("WeightsSolver.LearningRate") == 0.2  # later ConfigSection wins
    assert conv1.float("Solvers.Momentum") == 0.9
    assert conv1.line_of("Solvers.Momentum")[1] == 9  # where it was written
    assert conv1.line_of("WeightsSolver.LearningRate")[1] == 11
    assert conv1.keys() == ["Input", "Type", "NoBias", "ConfigSection",
                            "WeightsSolver.LearningRate", "Solvers.Momentum"]
    assert conv1.subkeys("WeightsSolver.") == ["LearningRate"]
    assert conv1.subkeys("Solvers.") == ["Momentum"]


def test_missing_config_section_is_an_error_at_that_key(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG_SECTIONS)
    cfg = load_config(path)
    with pytest.raises(UserError, match=located(
            path, 13, r"\[bad\] ConfigSection: no section \[nowhere.config\]")):
        cfg["bad"].str("Anything", None)


def test_unused_sections(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASES + CONFIG_SECTIONS.replace("[conv1]", "[fc1]")))
    assert "Conv_def" not in cfg.unused_sections()  # used as a base
    assert "conv1" in cfg.unused_sections()
    cfg["fc1"].str("NoBias")  # reads through the ConfigSections: they become used
    unused = cfg.unused_sections()
    assert "fc1" not in unused and "common.config" not in unused
    assert "fc.config" not in unused
    assert "bad" in unused and "x.y:z" in unused


def test_check_keys_strict_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[conv2]\nInput=conv1\nKernelDim=5 5\nQWeight.Range=255\n")
    sec = load_config(path)["conv2"]
    with pytest.raises(UserError, match=located(
            path, 3, r"\[conv2\] KernelDim: unknown key for a Conv cell "
                     r"\(did you mean KernelDims\?\)$")):
        sec.check_keys(["Input", "KernelDims", "NbOutputs"], "a Conv cell", ["QWeight."])
    sec.check_keys(["Input", "KernelDim"], "a Conv cell", ["QWeight."])  # all known: fine
    with pytest.raises(UserError, match=r"QWeight.Range: unknown key for a Conv cell$"):
        sec.check_keys(["Input", "KernelDim"], "a Conv cell")


def test_check_keys_sees_config_section_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[c]\nInput=x\nConfigSection=cc\n[cc]\nDropuot=0.5\n")
    with pytest.raises(UserError, match=located(
            path, 5, r"\[c\] Dropuot: unknown key for a Fc cell \(did you mean Dropout\?\)")):
        load_config(path)["c"].check_keys(["Input", "ConfigSection", "Dropout"], "a Fc cell")
