"""The two kinds of failure n2q distinguishes.

A :class:`UserError` is something the user can fix (INI, option, data, weights): the CLI prints
it as ONE line and exits with status 2, without a traceback unless ``--debug``. Anything else is
an internal error (exit 1, traceback).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class UserError(Exception):
    """A problem in the user's input, rendered ``FILE:LINE: [SECTION] KEY: message``.

    Every part of the location is optional; give as many as are known so that the user can go
    straight to the offending line.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.section = section
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        if self.section is not None:
            where += f"[{self.section}] "
        if self.key:
            where += f"{self.key}: "
        # always ONE line, even when the message quotes a multi-line text from elsewhere
        return where + re.sub(r"\s*[\r\n]+\s*", " ", self.message).strip()


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """" (did you mean X?)" for the candidate closest to a misspelt name, else "". A name
    that differs only in case wins (``Input=Sp`` -> sp)."""
    import difflib

    candidates = sorted(candidates)
    same_but_case = [c for c in candidates if c.lower() == word.lower()]
    close = same_but_case or difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def notice(message: str) -> None:
    """Print an informational line (unused sections, missing weights files...) to stderr."""
    import sys

    print(f"Notice: {message}", file=sys.stderr)


def warning(message: str) -> None:
    """Print a line about something n2q did differently from what was written, to stderr."""
    import sys

    print(f"Warning: {message}", file=sys.stderr)


# Set by the CLI's --debug (or N2Q_DEBUG=1 in the environment): debug() lines are shown only then.
DEBUG = False


def debug(message: str) -> None:
    """Print a diagnostic line (e.g. an inherited key overridden) only in debug mode."""
    import os
    import sys

    if DEBUG or os.environ.get("N2Q_DEBUG", "") not in ("", "0"):
        print(f"Debug: {message}", file=sys.stderr)


def quiet_interrupts() -> None:
    """From now on, Ctrl-C ends the process at once with status 130 and no traceback: for the
    end of the program, when Python joins threads (progress bars, data workers) and a
    KeyboardInterrupt would print a traceback from ``threading``."""
    import os
    import signal
    import sys

    def leave(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)

    signal.signal(signal.SIGINT, leave)


def is_allocation_failure(error: BaseException) -> bool:
    """A tensor that does not fit in memory (MemoryError, torch's CPU allocator or CUDA out of
    memory, both RuntimeErrors)."""
    text = str(error)
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError)
        and ("can't allocate memory" in text or "out of memory" in text))


def too_large(section: Any, error: BaseException) -> BaseException:
    """What to raise for ``error`` met while building the layer of ``section``: a UserError at
    the section when a tensor did not fit in memory, else ``error`` itself (internal)."""
    if not is_allocation_failure(error):
        return error
    return section.error(None, "this layer needs more memory than there is: check its sizes "
                               "(NbOutputs, KernelDims...)")
