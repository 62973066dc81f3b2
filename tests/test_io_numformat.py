"""The vectorised %.9g formatter: same text as Python's '%.9g', float32 round trip bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from n2q.io.numformat import format_fields, text_of
from n2q.io.syntxt import format_column, format_rows, read_values

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 100.0, 1e-4, 1e-5, 123456789.0,
                    1234567890.0, 99999.9999, 0.000123456, 1e8, 1e9, 3.4028235e38, 1.4e-45,
                    1.1754944e-38, 2.5, -2.75, 7e7, 1200.5, np.nan, np.inf, -np.inf],
                   dtype=np.float32)


def reference(values: np.ndarray) -> list[str]:
    return [f"{v:.9g}" for v in values.astype(np.float64)]


def random_float32(n: int, seed: int) -> np.ndarray:
    """Values over the whole float32 range (exponents 1e-45..1e38), both signs."""
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):  # beyond float32's range -> inf, filtered out
        values = (rng.standard_normal(n) * 10.0 ** rng.integers(-45, 39, n)).astype(np.float32)
    return values[np.isfinite(values) & (values != 0)]


def test_special_values_match_python() -> None:
    fields = format_fields(SPECIAL, extra=1)
    fields[:, -1] = ord("\n")
    assert text_of(fields).splitlines() == [
        s.replace("-nan", "nan") for s in reference(SPECIAL)]


@pytest.mark.parametrize("seed", [0, 1])
def test_random_values_match_python_and_round_trip(seed: int) -> None:
    values = random_float32(200_000, seed)
    text = format_column(values)
    assert text.splitlines() == reference(values)
    back = np.array(text.split(), dtype=np.float64).astype(np.float32)
    assert np.array_equal(back.view(np.uint32), values.view(np.uint32))


def test_weights_like_values_round_trip_through_the_reader(tmp_path) -> None:
    values = (np.random.default_rng(3).standard_normal(30_000) * 0.05).astype(np.float32)
    path = tmp_path / "w.syntxt"
    path.write_text(format_rows(values, [300] * 100))
    back = read_values(path, [300] * 100, "output").astype(np.float32)
    assert np.array_equal(back.view(np.uint32), values.view(np.uint32))


def test_rows_and_empty_rows() -> None:
    assert format_rows(np.array([1, 2, 3], dtype=np.float32), [2, 1]) == "1 2 \n3 \n"
    # an output with no connection writes an empty line (N2D2 does the same)
    assert format_rows(np.array([1, 2], dtype=np.float32), [1, 0, 1]) == "1 \n\n2 \n"
    with pytest.raises(ValueError, match="3 values for rows totalling 2"):
        format_rows(np.zeros(3, dtype=np.float32), [2])


def test_blocks_of_lines_give_the_same_text(monkeypatch) -> None:
    from n2q.io import syntxt

    values = random_float32(1000, 5)[:60]
    lengths = [7, 1, 12, 0, 30, 10]
    expected = "".join(" ".join(f"{v:.9g}" for v in values[sum(lengths[:i]):][:n]) +
                       (" " if n else "") + "\n" for i, n in enumerate(lengths))
    monkeypatch.setattr(syntxt, "CHUNK_VALUES", 8)  # lines grouped by ~8 values
    assert list(syntxt.row_chunks(values, [7, 1, 12, 30, 10]))[0] == format_rows(
        values[:7], [7]) + format_rows(values[7:8], [1])
    assert format_rows(values, lengths) == expected
    assert format_column(values[:3]) == "".join(f"{v:.9g}\n" for v in values[:3])
