"""Issue 16, option values (n2q/cli.py's parsing): a value is ASCII as N2D2 writes it, an empty
value is not "no option", a seed fits torch's 64 bits."""

from __future__ import annotations

import pytest

from n2q.cli import parse_args
from n2q.errors import UserError


@pytest.mark.parametrize("argv", [
    ["-learn", "１２"], ["-learn=１２"], ["-learn", "1_000"], ["-learn", " 12"], ["-learn", "+12"],
    ["-nb-test", "٣"], ["-dev", "１"], ["-valid-metric", "Ｐrecision"],
])
def test_non_ascii_or_odd_numbers_are_refused(argv: list[str]) -> None:
    with pytest.raises(UserError, match=rf"option {argv[0].split('=')[0]}"):
        parse_args(["net.ini", "-test", *argv])


@pytest.mark.parametrize("word", ["-w=", "-l=", "-export=", "-seed=", "-learn="])
def test_an_empty_value_is_refused(word: str) -> None:
    with pytest.raises(UserError, match=rf"option {word[:-1]} expects a value"):
        parse_args(["net.ini", word])
    with pytest.raises(UserError, match=rf"option {word[:-1]} expects a value"):
        parse_args(["net.ini", word[:-1], ""])


@pytest.mark.parametrize("text", ["18446744073709551616", "99999999999999999999999"])
def test_a_seed_past_64_bits_is_refused(text: str) -> None:
    with pytest.raises(UserError, match=r"-seed: .*2\^64"):
        parse_args(["net.ini", "-learn", "1", "-seed", text])


def test_valid_values_still_parse() -> None:
    options = parse_args(["net.ini", "-learn", "12", "-seed=18446744073709551615", "-w", "wé",
                          "-dev", "cuda:0"])
    assert (options.learn, options.seed, options.w, options.dev) == (
        12, 2 ** 64 - 1, "wé", "cuda:0")
    assert parse_args(["net.ini", "-test", "-test-index", "-1"]).test_index == -1
