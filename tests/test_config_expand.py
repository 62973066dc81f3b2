"""spec/ini.md, Variables and references: ${VAR}, built-ins, env vars, [Section]Key, $(expr)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2q.config import load_config
from n2q.config.expand import evaluate
from n2q.errors import UserError


def write(tmp_path: Path, text: str, name: str = "net.ini") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def located(path: Path, line: int, rest: str) -> str:
    return "^" + re.escape(f"{path}:{line}: ") + rest


VARS = """\
$SIZE=24
$ALPHA=0.5
$NAME=${SECTION_NAME}_x
[first]
$SIZE=32
A=${SIZE}
B=${ALPHA}
C=${NAME}
[second]
A=${SIZE}
P=${PREV_SECTION_NAME}
S=${SECTION_NAME}
U=text ${HOME_DIR_NOT_SET_ANYWHERE} tail
"""


def test_variables_section_then_global(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VARS))
    assert cfg["first"].int("A") == 32  # the section's own $SIZE wins
    assert cfg["second"].int("A") == 24  # else the global one
    assert cfg["first"].float("B") == 0.5
    # a variable's value is resolved in the reading section
    assert cfg["first"].str("C") == "first_x"


def test_builtin_variables(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, VARS))
    assert cfg["second"].str("P") == "first"
    assert cfg["second"].str("S") == "second"
    assert cfg["first"].str("P", None) is None  # key absent: the default
    cfg2 = load_config(write(tmp_path, "[only]\nP=${PREV_SECTION_NAME}\n", "b.ini"))
    assert cfg2["only"].str("P") == ""  # no previous section


def test_undefined_variable_in_str_read_names_key_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, VARS)
    with pytest.raises(UserError, match=located(
            path, 13, r"\[second\] U: undefined variable \$\{HOME_DIR_NOT_SET_ANYWHERE\}: "
                      r"define \$HOME_DIR_NOT_SET_ANYWHERE=\.\.\.")):
        load_config(path)["second"].str("U")


def test_undefined_variable_in_typed_read_and_expression(tmp_path: Path) -> None:
    text = ("$STEP_DECAY_RATE=0.1\n$EPOCHS=$(4 * ${STEP_DECAY_EPOCHS})\n[common.config]\n"
            "Solvers.LearningRateDecay=${STEPDECAY_RATE}\nSolvers.MaxIterations=${EPOCHS}\n")
    path = write(tmp_path, text)
    sec = load_config(path)["common.config"]
    with pytest.raises(UserError, match=located(
            path, 4, r"\[common.config\] Solvers.LearningRateDecay: undefined variable "
                     r"\$\{STEPDECAY_RATE\} \(did you mean \$STEP_DECAY_RATE\?\)")):
        sec.float("Solvers.LearningRateDecay")
    with pytest.raises(UserError, match=located(
            path, 5, r"\[common.config\] Solvers.MaxIterations: undefined variable "
                     r"\$\{STEP_DECAY_EPOCHS\}")):
        sec.int("Solvers.MaxIterations")


def test_environment_variables_in_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("[database]\nDataPath=${N2D2_DATA}/mnist\nOther=${N2Q_DATA}/x\n"
            "Home=$HOME/data\nRel=data/sub\nBad=${NOT_AN_ENV_VAR_N2Q}/x\n")
    path = write(tmp_path, text)
    sec = load_config(path)["database"]
    monkeypatch.setenv("N2Q_DATA", "/data/root")
    monkeypatch.setenv("HOME", "/home/me")
    assert sec.path("DataPath") == Path("/data/root/mnist")  # N2D2_DATA is an alias
    assert sec.path("Other") == Path("/data/root/x")
    assert sec.path("Home") == Path("/home/me/data")
    assert sec.path("Rel", base="/ini/dir") == Path("/ini/dir/data/sub")
    assert sec.path("Rel") == Path("data/sub")
    assert sec.path("Missing", None) is None
    monkeypatch.delenv("N2Q_DATA")
    monkeypatch.setenv("N2D2_DATA", "/n2d2/data")
    assert sec.path("Other") == Path("/n2d2/data/x")  # and the other way round
    monkeypatch.delenv("N2D2_DATA")
    with pytest.raises(UserError, match=located(
            path, 2, r"\[database\] DataPath: \$\{N2D2_DATA\} is neither an INI variable nor "
                     r"an environment variable: define \$N2D2_DATA=\.\.\. in the INI or export "
                     r"N2Q_DATA")):
        sec.path("DataPath")
    with pytest.raises(UserError, match=r"Bad: \$\{NOT_AN_ENV_VAR_N2Q\} is neither"):
        sec.path("Bad")


def test_ini_variable_wins_over_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("N2Q_DATA", "/env")
    sec = load_config(write(tmp_path, "$N2Q_DATA=/ini\n[d]\nDataPath=${N2Q_DATA}/m\n"))["d"]
    assert sec.path("DataPath") == Path("/ini/m")


REFS = """\
[sp]
SizeX=24
SizeY=[sp]SizeX
[sp.Transformation-1]
Width=$([sp]SizeX + 8)
[conv1]
NbOutputs=16
Steps=$([sp]_EpochSize * 40)
Size=[conv1]_OutputsWidth [conv1]_OutputsHeight
Mean=[sp.StimuliData-x]_GlobalValue.mean
Label=see [Figure]1 here
Whole=[nosuch]Key
Missing=[sp]SizeZ
Loop=[conv1]Loop
Later=[pool1]_NbOutputs
Expr=$([nosuch]Key + 1)
[pool1]
NbOutputs=[conv1]NbOutputs
[sp.StimuliData-x]
ApplyTo=LearnOnly
"""


def test_references_resolve_lazily(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, REFS))
    assert cfg["sp"].int("SizeY") == 24
    assert cfg["sp.Transformation-1"].int("Width") == 32
    assert cfg["pool1"].int("NbOutputs") == 16
    cfg.set_generated("sp", "_EpochSize", 100)
    cfg.set_generated("conv1", "_OutputsWidth", 12)
    cfg.set_generated("conv1", "_OutputsHeight", 10)
    cfg.set_generated("sp.StimuliData-x", "_GlobalValue.mean", 0.1307)
    assert cfg["conv1"].int("Steps") == 4000
    assert cfg["conv1"].ints("Size") == [12, 10]
    assert cfg["conv1"].float("Mean") == 0.1307  # a key name with a dot
    cfg.set_generated("sp", "_EpochSize", 200)  # resolved when read, every time
    assert cfg["conv1"].int("Steps") == 8000


def test_reference_errors(tmp_path: Path) -> None:
    path = write(tmp_path, REFS)
    cfg = load_config(path)
    conv1 = cfg["conv1"]
    assert conv1.str("Label") == "see [Figure]1 here"  # not a section: left as is
    with pytest.raises(UserError, match=located(
            path, 12, r"\[conv1\] Whole: refers to \[nosuch\]Key but there is no \[nosuch\] "
                      r"section")):
        conv1.str("Whole")
    with pytest.raises(UserError, match=located(
            path, 13, r"\[conv1\] Missing: refers to \[sp\]SizeZ, which is not set \(did you "
                      r"mean Size[XY]\?\)")):
        conv1.str("Missing")
    with pytest.raises(UserError, match=located(path, 14, r"\[conv1\] Loop: references form "
                                                          r"a loop")):
        conv1.str("Loop")
    with pytest.raises(UserError, match=located(
            path, 8, r"\[conv1\] Steps: \[sp\]_EpochSize is not known yet")):
        conv1.str("Steps")
    with pytest.raises(UserError, match=located(
            path, 15, r"\[conv1\] Later: \[pool1\]_NbOutputs is not known yet")):
        conv1.str("Later")
    with pytest.raises(UserError, match=located(
            path, 16, r"\[conv1\] Expr: cannot evaluate \$\(\[nosuch\]Key \+ 1\): \[nosuch\]Key "
                      r"refers to no section \(there is no \[nosuch\]\)")):
        conv1.str("Expr")


def test_missing_sp_section_is_a_clear_error(tmp_path: Path) -> None:
    # ResNet-18-BN.ini's trap: [sp]SizeX without any [sp] section
    path = write(tmp_path, "[sp.Transformation-6]\nType=SliceExtraction\nWidth=[sp]SizeX\n")
    with pytest.raises(UserError, match=located(
            path, 3, r"\[sp.Transformation-6\] Width: refers to \[sp\]SizeX but there is no "
                     r"\[sp\] section: add a \[sp\] section")):
        load_config(path)["sp.Transformation-6"].int("Width")


def test_env_generated_keys_fall_back_to_sp(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[env]\nSizeX=1\n[c]\nSteps=$([env]_EpochSize * 2)\n"))
    cfg.set_generated("sp", "_EpochSize", 21)
    assert cfg["c"].int("Steps") == 42


@pytest.mark.parametrize(("expr", "value"), [
    ("1 + 2 * 3", "7"),
    ("7 / 2", "3.5"),  # Python 3 division
    ("120 / 1", "120.0"),
    ("7 // 2", "3"),
    ("7 % 4", "3"),
    ("2 ** 10", "1024"),
    ("-3 + +1", "-2"),
    ("int(64 * 0.75)", "48"),
    ("float(3)", "3.0"),
    ("round(2.6)", "3"),
    ("min(3, 1, 2) + max(4, 5)", "6"),
    ("abs(-2.5)", "2.5"),
    ("1 if 2 > 1 else 0", "1"),
    ("8**(-1.0/(2*2-2)) if 8 > 0 else 1.0", repr(8 ** (-1.0 / 2))),
    ("1 < 2 <= 2", "1"),
    ("not 0", "1"),
    ("1 and 0", "0"),
    ("0 or 5", "5"),
    ("3 == 3.0", "1"),
    ("1 != 1", "0"),
])
def test_expression_whitelist(expr: str, value: str) -> None:
    assert evaluate(expr) == value


@pytest.mark.parametrize("expr", [
    "__import__('os').system('x')",
    "open('/etc/passwd')",
    "(1).real",
    "[1, 2][0]",
    "(lambda: 1)()",
    "[x for x in (1, 2)]",
    "{1: 2}",
    "x",
    "print(1)",
    "int(x=1)",
])
def test_expression_refused_names_the_expression(expr: str) -> None:
    with pytest.raises(UserError, match=r"^cannot evaluate \$\(" + re.escape(expr)
                       + r"\): only numbers"):
        evaluate(expr)


def test_expression_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"cannot evaluate \$\(1 / 0\): division by zero"):
        evaluate("1 / 0")
    with pytest.raises(UserError, match=r"cannot evaluate \$\(9 \*\* 9 \*\* 9\): the result "
                                        r"is too large"):
        evaluate("9 ** 9 ** 9")
    with pytest.raises(UserError, match=r"cannot evaluate \$\('a' \* 10\*\*9\): the result"):
        evaluate("'a' * 10**9")
    with pytest.raises(UserError, match=r"cannot evaluate \$\(1 \+\): not a valid expression"):
        evaluate("1 +")
    path = write(tmp_path, "[s]\nA=$(1 + (2)\nB=x $(1+1) y $(2*$(1+2))\n")
    sec = load_config(path)["s"]
    with pytest.raises(UserError, match=located(path, 2, r"\[s\] A: unbalanced parentheses")):
        sec.str("A")
    assert sec.str("B") == "x 2 y 6"  # several, nested, innermost first


def test_expression_in_ini_with_variables_and_references(tmp_path: Path) -> None:
    text = ("$ALPHA=0.75\n$L=8\n$MARGIN=32\n$BS=256\n[sp]\nSizeX=224\n[c]\n"
            "N=$(int(64 * ${ALPHA}))\nS=$(${L}**(-1.0/(2*2-2)) if ${L} > 0 else 1.0)\n"
            "Off=$(${MARGIN} / 2)\nIt=$([sp]_EpochSize * 120 / ${BS})\n"
            "Evil=$(__import__('os').getcwd())\n")
    path = write(tmp_path, text)
    cfg = load_config(path)
    cfg.set_generated("sp", "_EpochSize", 1000)
    c = cfg["c"]
    assert c.int("N") == 48
    assert c.float("S") == pytest.approx(8 ** -0.5)
    assert c.float("Off") == 16.0
    assert c.str("It") == "468.75"
    with pytest.raises(UserError, match=located(
            path, 12, r"\[c\] Evil: cannot evaluate \$\(__import__\('os'\).getcwd\(\)\)")):
        c.str("Evil")


def test_integer_key_given_float_takes_integer_part(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[sp]\nSizeX=120.0\n[c]\nIt=$(1000 * 120 / 256)\nF=$(45 / 4)\n")
    cfg = load_config(path)
    assert cfg["sp"].int("SizeX") == 120
    assert capsys.readouterr().err == ""  # integral: silent
    assert cfg["c"].int("It") == 468
    err = capsys.readouterr().err
    assert f"Notice: {path}:4: [c] It: 468.75 is not an integer, using 468" in err
    assert cfg["c"].float("F") == 11.25  # float keys keep the exact value


def test_self_referencing_variable_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "$A=x${B}\n$B=${A}\n[s]\nK=${A}\n")
    with pytest.raises(UserError, match=located(path, 4, r"\[s\] K: variable \$\{[AB]\} refers "
                                                         r"to itself")):
        load_config(path)["s"].str("K")


def test_duplicate_variable_in_one_body_warns(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "$A=1\n$A=2\n[s]\nK=${A}\n")
    cfg = load_config(path)
    assert f"{path}:2: $A: overriding property $A (previous value was 1)" in (
        capsys.readouterr().err)
    assert cfg["s"].int("K") == 2


def test_integer_notice_once_per_written_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    text = "[c1]\nConfigSection=cc\n[c2]\nConfigSection=cc\n[cc]\nIt=$(10 / 4)\n"
    cfg = load_config(write(tmp_path, text))
    assert [cfg[name].int("It") for name in ("c1", "c2", "c1")] == [2, 2, 2]
    assert capsys.readouterr().err.count("2.5 is not an integer, using 2") == 1
