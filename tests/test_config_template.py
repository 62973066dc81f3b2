"""spec/ini.md, Templates: N2D2's template syntax and ``[NAME@FILE.ini.tpl]`` sections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2q.config import load_config
from n2q.config.template import render_template
from n2q.errors import UserError


def render(source: str, **params: str) -> str:
    return render_template(source, "t.tpl", params)[0]


def located(path: Path | str, line: int, rest: str) -> str:
    return "^" + re.escape(f"{path}:{line}: ") + rest


# -- the template language on its own ------------------------------------------------------------
def test_variables() -> None:
    assert render("a={{A}} b={{ B }}\n", A="1", B="x") == "a=1 b=x"


@pytest.mark.parametrize(("source", "params", "expected"), [
    ("{% if A == 1 %}yes{% endif %}", {"A": "1"}, "yes"),
    ("{% if A == 1 %}yes{% endif %}", {"A": "2"}, ""),
    ("{% if A == 2 %}yes{% endif %}", {"A": "2.0"}, "yes"),  # numbers compare by value
    ("{% if A == Max %}yes{% endif %}", {"A": "Max"}, "yes"),
    ("{% if A != 1 %}yes{% else %}no{% endif %}", {"A": "1"}, "no"),
    ("{% if A != 1 %}yes{% else %}no{% endif %}", {"A": "3"}, "yes"),
    ("{% if A exists %}yes{% else %}no{% endif %}", {"A": ""}, "yes"),
    ("{% if A exists %}yes{% else %}no{% endif %}", {}, "no"),
    ("{% if A not_exists %}yes{% endif %}", {}, "yes"),
    ("{% if A not_exists %}yes{% endif %}", {"A": "1"}, ""),
    ("{% if A exists %}{% if B exists %}ab{% else %}a{% endif %}{% endif %}", {"A": "1"}, "a"),
])
def test_if(source: str, params: dict[str, str], expected: str) -> None:
    assert render(source, **params) == expected


def test_for_range() -> None:
    assert render("{% for I in range(1, 4) %}[{{I}}]{% endfor %}") == "[1][2][3]"
    assert render("{% for I in range(N) %}{{I}},{% endfor %}", N="3") == "0,1,2,"
    assert render("{% for I in range(A, B) %}{{I}}{% endfor %}", A="2", B="4") == "23"
    assert render("{% for I in range(3, 1) %}x{% endfor %}") == ""
    # nested loops, and the loop variable is gone afterwards
    out = render("{% for I in range(2) %}{% for J in range(2) %}{{I}}{{J}} {% endfor %}"
                 "{% endfor %}{% if I exists %}leak{% endif %}")
    assert out == "00 01 10 11 "


def test_set_escapes_the_if_and_is_rendered() -> None:
    source = ("{% if P exists %}{% set INPUT %}{{NAME}}_proj{% endset %}{% endif %}"
              "Input={{NAME}}_b,{{INPUT}}")
    assert render(source, NAME="c", INPUT="pool1", P="1") == "Input=c_b,c_proj"
    assert render(source, NAME="c", INPUT="pool1") == "Input=c_b,pool1"


def test_block() -> None:
    source = "{% block L %}[{{#}}:{{size}}]{% endblock %}"
    assert render(source, L="2", **{"L[0]size": "3", "L[1]size": "5"}) == "[0:3][1:5]"
    assert render(source, L="0") == ""


def test_include(tmp_path: Path) -> None:
    (tmp_path / "part.tpl").write_text("inc={{A}}\n{% if A == 1 %}one{% endif %}")
    main = tmp_path / "main.tpl"
    text, origins = render_template("x\n{% include part.tpl %}\ny", str(main), {"A": "1"})
    assert text == "x\ninc=1\none\ny"
    assert origins == [(str(main), 1), (str(tmp_path / "part.tpl"), 1),
                       (str(tmp_path / "part.tpl"), 2), (str(main), 3)]


def test_origins_follow_loops_and_conditions() -> None:
    source = "a\n{% if X exists %}\nb\n{% endif %}\n{% for I in range(2) %}\nc{{I}}\n{% endfor %}\n"
    text, origins = render_template(source, "t.tpl", {"X": "1"})
    lines = text.split("\n")
    numbered = [(line, origins[i][1]) for i, line in enumerate(lines) if line.strip()]
    assert numbered == [("a", 1), ("b", 3), ("c0", 6), ("c1", 6)]


@pytest.mark.parametrize(("source", "line", "message"), [
    ("ok\n{{MISSING}}", 2, r"template: undefined variable MISSING in \{\{ \}\}"),
    ("{% if MISSING == 1 %}x{% endif %}", 1, r"template: undefined variable MISSING in "
                                             r"\{% if %\}"),
    ("a\n\n{% if A exists %}x", 3, r"template: missing \{% endif %\} before the end"),
    ("{% for I in range(2) %}x", 1, r"template: missing \{% endfor %\}"),
    ("{% set X %}x", 1, r"template: missing \{% endset %\}"),
    ("{% block B %}x", 1, r"template: missing \{% endblock %\}"),
    ("{% set X Y %}x{% endset %}", 1, r"template: bad \{% set X Y %\}: write "
                                       r"\{% set VAR %\}value\{% endset %\}"),
    ("{% block %}x{% endblock %}", 1, r"template: bad \{% block %\}: write "
                                      r"\{% block VAR %\}\.\.\.\{% endblock %\}"),
    ("x\n{% endif %}", 2, r"template: \{% endif %\} without a matching opening control"),
    ("{% else %}", 1, r"template: \{% else %\} without a matching"),
    ("{% frobnicate %}", 1, r"template: unknown control \{% frobnicate %\}: valid are if"),
    ("{% if A = 1 %}{% endif %}", 1, r"template: bad \{% if A = 1 %\}"),
    ("{% if A exists 1 %}{% endif %}", 1, r"template: bad \{% if A exists 1 %\}"),
    ("{% for I of range(2) %}{% endfor %}", 1, r"template: bad \{% for I of range\(2\) %\}"),
    ("{% for I in range(x) %}{% endfor %}", 1, r"template: range bound 'x' is not an integer"),
    ("{% for A in range(2) %}{% endfor %}", 1, r"template: loop variable A already exists"),
    ("{% block N %}{% endblock %}", 1, r"template: undefined variable N in \{% block %\}"),
    ("{% block B %}{% endblock %}", 1, r"template: block count B=x is not an integer"),
    ("\n{{A", 2, r"template: '\{\{' without a closing '\}\}'"),
    ("{%  %}", 1, r"template: empty \{% %\} control"),
    ("{{ }}", 1, r"template: empty \{\{ \}\}"),
    ("{% include nowhere.tpl %}", 1, r"template: included file nowhere.tpl not found"),
])
def test_template_errors_are_located(source: str, line: int, message: str) -> None:
    with pytest.raises(UserError, match=located("t.tpl", line, message)):
        render_template(source, "t.tpl", {"A": "1", "B": "x"})


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop.tpl"
    loop.write_text("{% include loop.tpl %}")
    with pytest.raises(UserError, match="includes nested more than 16 deep"):
        render_template(loop.read_text(), str(loop), {})


# -- template sections in an INI ------------------------------------------------------------------
BLOCK_TPL = """\
[{{SECTION_NAME}}_conv] conv_def
Input={{INPUT}}
NbOutputs={{NB}}
Stride={{STRIDES}}
P=${PREV_SECTION_NAME}
{% if PROJ exists %}
[{{SECTION_NAME}}_proj] conv_def
Input={{INPUT}}
NbOutputs=$({{NB}})
{% set INPUT %}{{SECTION_NAME}}_proj{% endset %}
{% endif %}

[{{SECTION_NAME}}_sum]
Input={{SECTION_NAME}}_conv,{{INPUT}}
File={{SECTION_FILE_NAME}}
"""

NET = """\
$ALPHA=0.5
[conv_def]
Type=Conv
[pool1]
Input=sp
[b1@${N2D2_MODELS}/block.ini.tpl]
INPUT=pool1
NB=$(int(64 * ${ALPHA}))
STRIDES=1
PROJ=1
[b2@block.ini.tpl]
INPUT=b1_sum
NB=[b1_conv]NbOutputs
STRIDES=2
[fc]
Input=b2_sum
"""


def make_net(tmp_path: Path, tpl: str = BLOCK_TPL, net: str = NET) -> Path:
    (tmp_path / "block.ini.tpl").write_text(tpl)
    path = tmp_path / "net.ini"
    path.write_text(net)
    return path


def test_template_sections_expand_in_place(tmp_path: Path) -> None:
    cfg = load_config(make_net(tmp_path))  # $N2D2_MODELS unset: found next to the INI
    names = [s.name for s in cfg.sections]
    assert names == ["conv_def", "pool1", "b1", "b1_conv", "b1_proj", "b1_sum", "b2", "b2_conv",
                     "b2_sum", "fc"]
    assert cfg["b1_conv"].str("Type") == "Conv"  # bases work in rendered text
    assert cfg["b1_conv"].int("NbOutputs") == 32  # parameters resolved (ALPHA=0.5)
    assert cfg["b1_proj"].int("NbOutputs") == 32
    assert cfg["b1_sum"].str("Input") == "b1_conv,b1_proj"  # {% set %} took effect
    assert cfg["b2_sum"].str("Input") == "b2_conv,b1_sum"  # no PROJ: unchanged
    assert cfg["b2_conv"].int("NbOutputs") == 32  # a reference as a parameter
    assert cfg["b2_conv"].int("Stride") == 2
    assert cfg["b1_sum"].path("File") == tmp_path / "block.ini.tpl"
    # the first rendered section's previous section skips the template section (N2D2)
    assert cfg["b1_conv"].str("P") == "pool1"
    # keys in rendered text report the template file and line
    assert cfg["b1_proj"].line_of("Input") == (str(tmp_path / "block.ini.tpl"), 8)
    assert cfg["b2_sum"].line_of("Input") == (str(tmp_path / "block.ini.tpl"), 14)
    # the template sections are consumed by the rendering: not "unused"
    cfg["fc"].str("Input")
    assert "b1" not in cfg.unused_sections() and "b2" not in cfg.unused_sections()


def test_template_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "block.ini.tpl").write_text("[{{SECTION_NAME}}_env]\nInput={{INPUT}}\n")
    monkeypatch.setenv("N2Q_MODELS", str(models))  # N2D2_MODELS is its alias
    net = "[x@${N2D2_MODELS}/block.ini.tpl]\nINPUT=sp\n"
    cfg = load_config(make_net(tmp_path, net=net))
    assert cfg["x_env"].str("Input") == "sp"


def test_nested_templates_and_include(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "inner.ini.tpl").write_text("[{{SECTION_NAME}}_in]\nV={{V}}\n{% include part.txt %}")
    (sub / "part.txt").write_text("W=2\n")
    (sub / "outer.ini.tpl").write_text(
        "{% for I in range(2) %}\n[{{SECTION_NAME}}_{{I}}@inner.ini.tpl]\nV={{I}}\n{% endfor %}")
    path = tmp_path / "net.ini"
    path.write_text("[o@sub/outer.ini.tpl]\n")
    cfg = load_config(path)
    assert [s.name for s in cfg.sections] == ["o", "o_0", "o_0_in", "o_1", "o_1_in"]
    assert cfg["o_1_in"].int("V") == 1
    assert cfg["o_1_in"].int("W") == 2
    assert cfg["o_1_in"].line_of("W") == (str(sub / "part.txt"), 1)


def test_error_in_rendered_text_points_into_the_template(tmp_path: Path) -> None:
    path = make_net(tmp_path, tpl="[{{SECTION_NAME}}_a]\nInput={{INPUT}}\nNo equal sign\n")
    with pytest.raises(UserError, match=located(
            tmp_path / "block.ini.tpl", 3, r"\[b1_a\] 'No equal sign' is neither")):
        load_config(path)
    path = make_net(tmp_path, tpl="[{{SECTION_NAME}}_a]\n\n{{UNDEFINED_PARAM}}\n")
    with pytest.raises(UserError, match=located(
            tmp_path / "block.ini.tpl", 3, r"\[b1\] template: undefined variable "
                                           r"UNDEFINED_PARAM in \{\{ \}\} \(known: INPUT, NB")):
        load_config(path)
    path = make_net(tmp_path, tpl="[{{SECTION_NAME}}_a]\nX=$(1 +* 2)\n")
    cfg = load_config(path)
    with pytest.raises(UserError, match=located(
            tmp_path / "block.ini.tpl", 2, r"\[b1_a\] X: cannot evaluate")):
        cfg["b1_a"].str("X")


def test_template_section_errors(tmp_path: Path) -> None:
    path = tmp_path / "net.ini"
    path.write_text("[a]\nX=1\n\n[b@missing.ini.tpl]\nINPUT=a\n")
    with pytest.raises(UserError, match=located(
            path, 4, r"\[b\] template file missing.ini.tpl not found \(looked next to")):
        load_config(path)
    path.write_text("[@x.tpl]\n")
    with pytest.raises(UserError, match=located(path, 1, r"\[@x.tpl\] template header needs a "
                                                         r"name and a file")):
        load_config(path)
    # a name rendered twice is a duplicate section, located in the template
    path = make_net(tmp_path, tpl="[same]\nA=1\n")
    with pytest.raises(UserError, match=located(tmp_path / "block.ini.tpl", 1,
                                                r"\[same\] section defined twice")):
        load_config(path)


@pytest.mark.parametrize("tpl", ["ResNet-block.ini.tpl", "ResNet_BN-block.ini.tpl",
                                 "ResNet-bottleneck_block.ini.tpl", "ResNet11-block.ini.tpl"])
def test_corpus_templates_render(reference: Path, tpl: str) -> None:
    path = reference / "n2d2-models" / tpl
    params = {"SECTION_NAME": "c2", "SECTION_FILE_NAME": str(path), "INPUT": "pool1",
              "NB_FILTERS": "64", "STRIDES": "2", "PROJECTION_SHORTCUT": "1"}
    with_proj, _ = render_template(path.read_text(), str(path), params)
    del params["PROJECTION_SHORTCUT"]
    without, _ = render_template(path.read_text(), str(path), params)
    assert "[c2_1x1_proj] conv_def" in with_proj and "c2_1x1_proj" not in without
    assert re.search(r"Input=c2_\w+,c2_1x1_proj\n", with_proj) or "bn_proj" in with_proj
    assert re.search(r"Input=c2_\w+,pool1\n", without)
    assert "{" not in without.replace("${L}", "")  # every control and {{VAR}} was rendered


def test_parameter_not_resolvable_yet_is_passed_raw(tmp_path: Path) -> None:
    tpl = "[{{SECTION_NAME}}_a]\nSteps={{STEPS}}\nN={{N}}\n"
    net = "[sp]\nSizeX=1\n[t@block.ini.tpl]\nSTEPS=$([sp]_EpochSize * 2)\nN=$(3 * 4)\n"
    cfg = load_config(make_net(tmp_path, tpl=tpl, net=net))
    assert cfg["t_a"].entry("N").value == "12"  # resolved when rendered
    assert cfg["t_a"].entry("Steps").value == "$([sp]_EpochSize * 2)"  # resolved when read
    cfg.set_generated("sp", "_EpochSize", 50)
    assert cfg["t_a"].int("Steps") == 100


def test_else_with_comparison_in_ini(tmp_path: Path) -> None:
    tpl = ("[{{SECTION_NAME}}_a]\n{% if STRIDES == 2 %}\nPadding=1\n{% else %}\nPadding=0\n"
           "{% endif %}\n")
    net = "[one@block.ini.tpl]\nSTRIDES=$(1 + 1)\n[two@block.ini.tpl]\nSTRIDES=1\n"
    cfg = load_config(make_net(tmp_path, tpl=tpl, net=net))
    assert cfg["one_a"].int("Padding") == 1
    assert cfg["two_a"].int("Padding") == 0
    assert cfg["two_a"].line_of("Padding") == (str(tmp_path / "block.ini.tpl"), 5)


def test_template_instantiating_itself_is_an_error(tmp_path: Path) -> None:
    path = make_net(tmp_path, tpl="[{{SECTION_NAME}}_x@block.ini.tpl]\n", net="[a@block.ini.tpl]\n")
    with pytest.raises(UserError, match=r"\] templates nested more than 16 deep"):
        load_config(path)
