"""spec/ini.md, Types: numbers, booleans, blank-separated lists, enums, with located errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2q.config import load_config
from n2q.errors import UserError

TEXT = """\
[s]
I=42
Neg=-3
Exp=1e3
F=0.017
Sci=2.5e-4
NotNum=abc
T1=1
T2=true
T3=Yes
T4=on
F1=0
F2=False
F3=no
Two=2
Maybe=maybe
Dims=5 5
One=7
Means=0.485 0.456 0.406
BadList=1 x 3
Names=conv1 conv2
Pooling=Max
BadPool=Maximum
Weird=Median
"""


@pytest.fixture
def sec(tmp_path: Path):
    path = tmp_path / "net.ini"
    path.write_text(TEXT, encoding="utf-8")
    return load_config(path)["s"]


def at(sec, key: str) -> str:
    file, line = sec.line_of(key)
    return "^" + re.escape(f"{file}:{line}: [s] {key}: ")


def test_numbers(sec) -> None:
    assert sec.int("I") == 42 and isinstance(sec.int("I"), int)
    assert sec.int("Neg") == -3
    assert sec.int("Exp") == 1000
    assert sec.float("F") == 0.017
    assert sec.float("Sci") == 2.5e-4
    assert sec.float("I") == 42.0 and isinstance(sec.float("I"), float)
    assert sec.int("Absent", 5) == 5
    assert sec.float("Absent", None) is None
    with pytest.raises(UserError, match=at(sec, "NotNum") + "'abc' is not an integer$"):
        sec.int("NotNum")
    with pytest.raises(UserError, match=at(sec, "NotNum") + "'abc' is not a number$"):
        sec.float("NotNum")


def test_booleans(sec) -> None:
    for key in ("T1", "T2", "T3", "T4", "Two"):
        assert sec.bool(key) is True, key
    for key in ("F1", "F2", "F3"):
        assert sec.bool(key) is False, key
    assert sec.bool("Absent", True) is True
    with pytest.raises(UserError, match=at(sec, "Maybe") + "'maybe' is not a boolean: use 0 or "
                                                          "1"):
        sec.bool("Maybe")


def test_lists(sec) -> None:
    assert sec.ints("Dims") == [5, 5]
    assert sec.ints("One") == [7]  # one value where a list is expected
    assert sec.floats("Means") == [0.485, 0.456, 0.406]
    assert sec.strs("Names") == ["conv1", "conv2"]
    assert sec.ints("Absent", [1, 1]) == [1, 1]
    with pytest.raises(UserError, match=at(sec, "BadList") + "'x' is not an integer$"):
        sec.ints("BadList")


def test_enums(sec) -> None:
    choices = ["Max", "Average"]
    assert sec.enum("Pooling", choices) == "Max"
    assert sec.enum("Absent", choices, "Average") == "Average"
    with pytest.raises(UserError, match=at(sec, "BadPool") + r"unknown value 'Maximum' \(did "
                                         r"you mean Max\?\); valid: Max, Average$"):
        sec.enum("BadPool", choices)
    with pytest.raises(UserError, match=at(sec, "Weird") + "unknown value 'Median'; valid: Max, "
                                                          "Average$"):
        sec.enum("Weird", choices)


def test_required_key_missing(sec) -> None:
    file, line = sec.file, sec.line
    with pytest.raises(UserError, match="^" + re.escape(f"{file}:{line}: [s] ")
                       + "missing key NbOutputs: add NbOutputs=... to this section$"):
        sec.int("NbOutputs")


def test_a_read_marks_the_section_used(sec) -> None:
    assert sec.config.unused_sections() == ["s"]
    sec.int("I")
    assert sec.config.unused_sections() == []


def test_missing_key_points_at_a_misspelling(tmp_path: Path) -> None:
    path = tmp_path / "net.ini"
    path.write_text("[c]\nNbOutput=3\n", encoding="utf-8")
    sec = load_config(path)["c"]
    with pytest.raises(UserError, match="^" + re.escape(
            f"{path}:1: [c] missing key NbOutputs (is NbOutput a misspelling?): add "
            "NbOutputs=... to this section")):
        sec.int("NbOutputs")
