"""spec/ini.md, Lines: BOM, continuations, comments, quotes, trimming, errors with FILE:LINE."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2q.config import load_config
from n2q.errors import UserError


def write(tmp_path: Path, text: str, name: str = "net.ini", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def located(path: Path, line: int, rest: str) -> str:
    """A regex for a UserError located at ``path:line``."""
    return "^" + re.escape(f"{path}:{line}: ") + rest


def test_bom_is_ignored(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "$A=1\n[sec]\nK=v\n", bom=True))
    assert cfg.globals.variables["A"].value == "1"  # not "\ufeff$A"
    assert cfg["sec"].str("K") == "v"


def test_continuation_joins_lines_and_keeps_first_line(tmp_path: Path) -> None:
    text = "[conv2]\nMapping(pool1)=\\\n1 0 \\\n0 1\nNext=2\n"
    cfg = load_config(write(tmp_path, text))
    sec = cfg["conv2"]
    assert sec.strs("Mapping(pool1)") == ["1", "0", "0", "1"]
    assert sec.line_of("Mapping(pool1)")[1] == 2
    assert sec.line_of("Next")[1] == 5


def test_comments_outside_quotes_only(tmp_path: Path) -> None:
    text = ('[s] ; a header comment\n'
            'A=1 ; comment\n'
            'B=2 # other comment\n'
            'C="x;y#z"\n'
            'D=a "q;q" b ; tail\n'
            '; a whole comment line\n'
            '# another one\n')
    sec = load_config(write(tmp_path, text))["s"]
    assert sec.str("A") == "1"
    assert sec.str("B") == "2"
    assert sec.str("C") == "x;y#z"  # quotes removed because they wrap the whole value
    assert sec.str("D") == 'a "q;q" b'  # inner quotes kept
    assert sec.keys() == ["A", "B", "C", "D"]


def test_unclosed_quote_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[s]\nA=1\nB="open ; no close\n')
    with pytest.raises(UserError, match=located(path, 3, r'a double quote \(\"\) is not closed')):
        load_config(path)


def test_names_trimmed_right_values_left(tmp_path: Path) -> None:
    sec = load_config(write(tmp_path, "[s]\n   Key   =   some value   \n"))["s"]
    assert sec.keys() == ["Key"]
    assert sec.str("Key") == "some value"


def test_line_without_equal_sign_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[s]\nA=1\nKernelDims 5 5\n")
    with pytest.raises(UserError, match=located(
            path, 3, r"\[s\] 'KernelDims 5 5' is neither \[SECTION\] nor KEY=VALUE")):
        load_config(path)


def test_empty_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[s]\n=1\n")
    with pytest.raises(UserError, match=located(path, 2, r"\[s\] empty key name")):
        load_config(path)


def test_header_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "[s\nA=1\n")
    with pytest.raises(UserError, match=located(path, 1, r"section header without '\]'")):
        load_config(path)
    path = write(tmp_path, "[ ]\n", "empty.ini")
    with pytest.raises(UserError, match=located(path, 1, "empty section name")):
        load_config(path)
    path = write(tmp_path, "[sp]SizeX=3\n", "mixed.ini")
    with pytest.raises(UserError, match=located(path, 1, r"\[sp\] .*mixes a section header")):
        load_config(path)


def test_names_are_case_sensitive(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[Conv]\nNbOutputs=1\nnbOutputs=2\n[conv]\nA=1\n"))
    assert cfg["Conv"].int("NbOutputs") == 1
    assert cfg["Conv"].int("nbOutputs") == 2
    assert cfg.get("CONV") is None
    assert [s.name for s in cfg.sections] == ["Conv", "conv"]


def test_blank_lines_and_crlf(tmp_path: Path) -> None:
    sec = load_config(write(tmp_path, "\r\n[s]\r\n\r\n   \r\nA=1\r\n"))["s"]
    assert sec.str("A") == "1"
    assert sec.line_of("A")[1] == 5


def test_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="INI file not found"):
        load_config(tmp_path / "nope.ini")
    bad = tmp_path / "bad.ini"
    bad.write_bytes(b"[s]\nA=\xff\xfe\n")
    with pytest.raises(UserError, match=re.escape(f"{bad}:2: byte 0xff is not UTF-8 text: "
                                                  "save the file as UTF-8")):
        load_config(bad)


def test_user_error_is_one_located_line() -> None:
    err = UserError("bad value\n  Traceback-like detail\r\nmore", file="a.ini", line=3,
                    section="conv1", key="Stride")
    assert str(err) == "a.ini:3: [conv1] Stride: bad value Traceback-like detail more"
    assert str(UserError("no target", file="a.ini")) == "a.ini: no target"
    assert str(UserError("x  y")) == "x  y"  # inner spacing kept


def test_did_you_mean_prefers_a_case_only_difference() -> None:
    from n2q.errors import did_you_mean

    assert did_you_mean("Sp", ["sp", "Sq"]) == " (did you mean sp?)"
    assert did_you_mean("KernelDim", ["KernelDims", "NbOutputs"]) == " (did you mean KernelDims?)"
    assert did_you_mean("zzz", ["KernelDims"]) == ""
