"""Progress display: a tqdm bar on a terminal, plain lines otherwise (logs, pipes, CI)."""

from __future__ import annotations

import sys
import time
from typing import Any

PLAIN_MIN_INTERVAL = 5.0  # seconds between two plain progress lines


class Progress:
    """``update(n, **postfix)`` after each batch; ``write(line)`` prints above the bar."""

    def __init__(self, total: int, desc: str, every: int, stream: Any = None,
                 refresh: float = 0.2):
        self.stream = stream if stream is not None else sys.stderr
        self.total = total
        self.desc = desc
        self.every = max(1, every)  # stimuli between two updates (-report)
        self.done = 0
        self.pending = 0
        self.start = time.perf_counter()
        self.last_line = self.start
        self.bar = None
        self.postfix = ""
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="stim", file=self.stream,
                            dynamic_ncols=True, leave=False, mininterval=refresh)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def due(self, n: int) -> bool:
        """Whether the next ``update(n)`` reaches a report point (the caller then syncs)."""
        return self.pending + n >= self.every or self.done + n >= self.total

    def update(self, n: int, **postfix: Any) -> None:
        self.done += n
        self.pending += n
        if self.pending < self.every and self.done < self.total:
            return
        shown = self.pending
        self.pending = 0
        if postfix:  # values not read this time: show the last ones read
            self.postfix = " ".join(f"{k}={v}" for k, v in postfix.items())
        text = self.postfix
        if self.bar is not None:
            self.bar.set_postfix_str(f"{text} {self.rate():.0f} stim/s", refresh=False)
            self.bar.update(shown)
            return
        now = time.perf_counter()
        if now - self.last_line >= PLAIN_MIN_INTERVAL or self.done >= self.total:
            self.last_line = now
            print(f"{self.desc}: {self.done}/{self.total} stimuli {text} "
                  f"{self.rate():.0f} stim/s", file=self.stream, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
