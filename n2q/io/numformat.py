"""Vectorised ``%.9g`` formatting of float32 values (numpy only, no Python loop per value).

A ResNet-18 folder holds 11.7 M values (23 M with the quantized copies). Python's ``%``
operator needs one Python float object per value (a tuple of millions of them) and ~0.16 us
per value; here every value becomes a fixed-width row of ASCII bytes in a ``uint8`` matrix
(16 bytes per value), unused positions holding NUL, and deleting the NULs of the whole buffer
at once (one boolean selection) leaves the variable-width text: ~0.12 us per value.

Output follows ``%.9g``: 9 significant digits, trailing zeros removed, positional notation for
decimal exponents -4..8, else ``d.ddde+XX``. The 9 digits come from ``rint(|x| * 10**(8-e))``
in float64, which is correctly rounded except when the exact product lies within ~1e-7 of a
half-integer; then the last digit may differ by one from ``%.9g``. Either way the decimal is
within 0.51e-8 (relative) of the value, far inside half a float32 ulp (>= 5.9e-8), so parsing
it back gives the same float32 bit for bit.
"""

from __future__ import annotations

import numpy as np

FIELD = 16  # sign + up to 15 body characters ("0.0001" + 9 digits, "d.dddddddde+XX")
_NUL, _ZERO, _POINT, _E = 0, ord("0"), ord("."), ord("e")
_MINUS, _PLUS = ord("-"), ord("+")


def _decompose(magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(e, m) with magnitude ~= m * 10**(e-8), 1e8 <= m < 1e9 (m integral, float64)."""
    e = np.floor(np.log10(magnitude)).astype(np.int16)  # small keys: radix argsort later
    m = np.rint(magnitude * 10.0 ** (8 - e))
    for step in (1, -1):  # log10 may be off by one next to powers of ten
        wrong = (m >= 1e9) if step == 1 else (m < 1e8)
        if wrong.any():
            e[wrong] += step
            m[wrong] = np.rint(magnitude[wrong] * 10.0 ** (8 - e[wrong]))
    return e, m


def _template(e: int) -> tuple[list[tuple[str, int]], int]:
    """Body layout for decimal exponent e: ("d", j) = digit j, ("c", byte) = a constant; and the
    index of the first digit after the point (digits from there on may be dropped)."""
    digits = [("d", j) for j in range(9)]
    if 0 <= e <= 8:
        return digits[: e + 1] + [("c", _POINT)] + digits[e + 1:], e + 1
    if -4 <= e < 0:
        return [("c", _ZERO), ("c", _POINT)] + [("c", _ZERO)] * (-e - 1) + digits, 0
    exponent = f"{abs(e):02d}"
    tail = [("c", _E), ("c", _MINUS if e < 0 else _PLUS)] + [("c", ord(ch)) for ch in exponent]
    return digits[:1] + [("c", _POINT)] + digits[1:] + tail, 1


def _fill_group(body: np.ndarray, digits: np.ndarray, kept: np.ndarray, e: int) -> None:
    """Write the rows of one exponent into ``body`` [k, FIELD-1]; ``kept`` = significant
    digits per row (trailing zeros dropped)."""
    layout, first_fraction = _template(e)
    for column, (kind, value) in enumerate(layout):
        if kind == "c":
            body[:, column] = value
            if value == _POINT:
                body[kept <= first_fraction, column] = _NUL  # "1." -> "1"
        else:
            body[:, column] = digits[:, value]
            if value >= first_fraction:
                body[kept <= value, column] = _NUL  # trailing zero of the fraction


# ASCII digits of 0..999 and their count of trailing zeros (3 for 0).
_CHUNK_DIGITS = np.array([[ord(ch) for ch in f"{i:03d}"] for i in range(1000)], dtype=np.uint8)
_CHUNK_TRAILING_ZEROS = np.array([3 if i == 0 else len(f"{i:03d}") - len(f"{i:03d}".rstrip("0"))
                                  for i in range(1000)], dtype=np.int8)


def _digits(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ASCII digits of 9-digit integers (uint8 [k, 9], most significant first) and how many
    are significant (trailing zeros excluded), by table look-up of three 3-digit chunks."""
    m = m.astype(np.int32)  # < 1e9 < 2**31
    chunks = (m // 1_000_000, m // 1000 % 1000, m % 1000)
    digits = np.empty((m.size, 9), dtype=np.uint8)
    kept = np.zeros(m.size, dtype=np.int8)
    for index, chunk in enumerate(chunks):
        digits[:, 3 * index:3 * index + 3] = _CHUNK_DIGITS[chunk]
        # the last non-zero chunk decides: chunks are visited most significant first
        kept = np.where(chunk != 0, 3 * index + 3 - _CHUNK_TRAILING_ZEROS[chunk], kept)
    return digits, kept


def format_fields(values: np.ndarray, extra: int = 0) -> np.ndarray:
    """``%.9g`` of each value as a NUL-padded ASCII row: uint8 [n, FIELD + extra], the
    ``extra`` last columns left NUL for the caller's separators."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    fields = np.zeros((x.size, FIELD + extra), dtype=np.uint8)
    magnitude = np.abs(x)
    fields[np.signbit(x) & ~np.isnan(x), 0] = _MINUS
    regular = np.flatnonzero(np.isfinite(x) & (magnitude > 0))
    for rows, text in ((np.flatnonzero(x == 0), b"0"), (np.flatnonzero(np.isnan(x)), b"nan"),
                       (np.flatnonzero(np.isinf(x)), b"inf")):
        fields[rows, 1:1 + len(text)] = np.frombuffer(text, dtype=np.uint8)
    if regular.size == 0:
        return fields
    e, m = _decompose(magnitude[regular])
    if np.abs(e).max() >= 100:
        raise ValueError("format_fields handles float32 magnitudes (|exponent| < 100)")
    # Sorted by exponent, each exponent's rows are one slice sharing one layout.
    order = np.argsort(e, kind="stable")
    e, m = e[order], m[order]
    digits, kept = _digits(m)  # [k, 9], [k]
    body = np.zeros((e.size, FIELD - 1), dtype=np.uint8)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(e)) + 1, [e.size]])
    for start, end in zip(starts[:-1], starts[1:], strict=True):
        _fill_group(body[start:end], digits[start:end], kept[start:end], int(e[start]))
    fields[regular[order], 1:FIELD] = body
    return fields


def text_of(fields: np.ndarray) -> str:
    """The rows of ``fields`` one after the other, every NUL dropped."""
    return fields[fields != _NUL].tobytes().decode("ascii")  # row-major: text order
