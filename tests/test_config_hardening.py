"""Issue 16, config side: hostile INI and template input ends in ONE located line, quickly.

Templates: loops and output are bounded (no runaway memory), includes stay inside the
INI's folder or the template path and never echo what they read; a non-UTF-8 INI names the
line and how to fix it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from n2q.config import load_config
from n2q.config.template import MAX_LOOP_PASSES, MAX_OUTPUT_CHARS, render_template
from n2q.errors import UserError


def located(path: Path | str, line: int, rest: str) -> str:
    return "^" + re.escape(f"{path}:{line}: ") + rest


# -- bounded rendering ---------------------------------------------------------------------------
def test_huge_loop_is_refused_at_its_line_without_running() -> None:
    source = "a\n{% for I in range(1000000000) %}x{% endfor %}\n"
    started = time.perf_counter()
    with pytest.raises(UserError, match=located("t.tpl", 2, r"template: .*1000000000 passes")):
        render_template(source, "t.tpl", {})
    assert time.perf_counter() - started < 1.0  # refused up front, not after running


def test_nested_loops_share_one_bound() -> None:
    side = int(MAX_LOOP_PASSES ** 0.5) + 10  # each loop alone is fine, together too many
    source = (f"{{% for I in range({side}) %}}\n{{% for J in range({side}) %}}"
              "{% endfor %}\n{% endfor %}")
    with pytest.raises(UserError, match=located("t.tpl", 2, r"template: .*passes")):
        render_template(source, "t.tpl", {})


def test_loop_within_the_bound_renders() -> None:
    text, _ = render_template("{% for I in range(1000) %}{{I}} {% endfor %}", "t.tpl", {})
    assert text.split() == [str(i) for i in range(1000)]


def test_output_size_is_bounded_even_through_set() -> None:
    # each pass doubles X: 2^40 characters if unbounded
    source = ("{% set X %}ab{% endset %}\n{% for I in range(40) %}"
              "{% set X %}{{X}}{{X}}{% endset %}{% endfor %}{{X}}")
    with pytest.raises(UserError, match=r"t.tpl:\d+: template: .*more than "
                                        f"{MAX_OUTPUT_CHARS} characters"):
        render_template(source, "t.tpl", {})


def test_block_count_is_bounded() -> None:
    with pytest.raises(UserError, match=located("t.tpl", 1, r"template: .*passes")):
        render_template("{% block L %}x{% endblock %}", "t.tpl", {"L": "10000000000"})


# -- includes ------------------------------------------------------------------------------------
def _net(tmp_path: Path, include: str) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / "block.ini.tpl").write_text(f"[{{{{SECTION_NAME}}}}_a]\n{{% include {include} %}}\n")
    net = folder / "net.ini"
    net.write_text("[b@block.ini.tpl]\n")
    return net


def test_include_outside_the_ini_folder_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    for text in (str(secret), "../secret.txt"):
        with pytest.raises(UserError) as caught:
            load_config(_net(tmp_path, text))
        message = str(caught.value)
        assert "hunter2" not in message and "password" not in message
        assert re.match(located(tmp_path / "project" / "block.ini.tpl", 2,
                                r"\[b\] template: .*outside"), message), message


def test_include_through_a_link_leading_outside_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("daemon_zq7:x:1:1\n")
    net = _net(tmp_path, "link.tpl")
    (net.parent / "link.tpl").symlink_to(secret)
    with pytest.raises(UserError, match="outside") as caught:
        load_config(net)
    assert "zq7" not in str(caught.value)


def test_template_header_outside_the_ini_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.ini.tpl"
    secret.write_text("this line is secret\n")
    folder = tmp_path / "project"
    folder.mkdir()
    net = folder / "net.ini"
    net.write_text(f"[b@{secret}]\n")
    with pytest.raises(UserError, match=located(net, 1, r"\[b\] .*outside")) as caught:
        load_config(net)
    assert "secret\n" not in str(caught.value) and "this line" not in str(caught.value)


def test_included_garbage_is_not_quoted(tmp_path: Path) -> None:
    net = _net(tmp_path, "notes.txt")
    (net.parent / "notes.txt").write_text("my private note without equal sign\n")
    with pytest.raises(UserError) as caught:
        load_config(net)
    message = str(caught.value)
    assert "private" not in message
    assert message.startswith(f"{net.parent / 'notes.txt'}:1: ")


def test_include_on_the_template_path_is_allowed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "part.ini.tpl").write_text("K=3\n")
    monkeypatch.setenv("N2D2_MODELS", str(models))
    cfg = load_config(_net(tmp_path, "${N2D2_MODELS}/part.ini.tpl"))
    assert cfg["b_a"].int("K") == 3


# -- encoding ------------------------------------------------------------------------------------
def test_non_utf8_ini_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "net.ini"
    path.write_bytes(b"[a]\nX=1\n; caf\xe9 in Latin-1\nY=2\n")
    with pytest.raises(UserError, match=located(path, 3, r".*save the file as UTF-8")):
        load_config(path)


def test_non_utf8_template_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "block.ini.tpl").write_bytes(b"[{{SECTION_NAME}}_a]\nK=\xff\xfe\n")
    net = folder / "net.ini"
    net.write_text("[b@block.ini.tpl]\n")
    with pytest.raises(UserError, match=located(folder / "block.ini.tpl", 2,
                                                r".*save the file as UTF-8")):
        load_config(net)


# -- typed values --------------------------------------------------------------------------------
def _section(tmp_path: Path, body: str):
    path = tmp_path / "net.ini"
    path.write_text("[s]\n" + body)
    return load_config(path)["s"], path


@pytest.mark.parametrize("text", ["99999999999999999999", "2147483648", "-2147483649", "1e30"])
def test_integer_beyond_32_bits_is_refused(tmp_path: Path, text: str) -> None:
    sec, path = _section(tmp_path, f"N={text}\n")
    with pytest.raises(UserError, match=located(path, 2, r"\[s\] N: .*32 bits")):
        sec.int("N")
    with pytest.raises(UserError, match=located(path, 2, r"\[s\] N: .*32 bits")):
        sec.ints("N")


@pytest.mark.parametrize(("text", "kind"), [("\uff11\uff12", "int"), ("1_000", "int"),
                                            ("\uff11.5", "float"), ("1_0.5", "float"),
                                            ("nan", "float"), ("inf", "float"),
                                            ("-1e999", "float"), ("nan", "floats")])
def test_numbers_are_ascii_and_finite(tmp_path: Path, text: str, kind: str) -> None:
    sec, path = _section(tmp_path, f"X={text}\n")
    with pytest.raises(UserError, match=located(path, 2, r"\[s\] X: ")):
        getattr(sec, kind)("X")


def test_limits_still_read(tmp_path: Path) -> None:
    sec, _ = _section(tmp_path, "A=2147483647\nB=-2147483648\nC=1e-30\nD=+7\nE=2.5e3\n")
    assert (sec.int("A"), sec.int("B"), sec.float("C"), sec.int("D"), sec.int("E")) == (
        2 ** 31 - 1, -2 ** 31, 1e-30, 7, 2500)
