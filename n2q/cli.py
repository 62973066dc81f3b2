"""Command line: ``n2q NET.ini [options]`` (spec/cli.md). Thin: parse, then hand to n2q.run."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("n2q: the command line is being built", file=sys.stderr)
    return 1
