"""``-multidev 0,1,2,3`` (N2D2's spelling): n2q starts one process per device itself.

Each rank is ``python -m n2q <the same arguments>`` with torchrun's environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so it takes the same path as a torchrun
run (n2q.train.distributed). Rank 0 keeps the terminal; the others' stderr is read here and
shown line by line (they print nothing but errors).

A failing rank ends the whole run: as soon as one process exits with an error or is killed,
the launcher stops the others (SIGTERM, then SIGKILL) and prints ONE line naming the rank
and why; its exit status is the failing rank's (2 for a user error). No torch import here:
the launcher only watches processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque

from n2q.errors import UserError, notice

LAUNCHED_ENV = "N2Q_MULTIDEV"   # = n2q.train.distributed.LAUNCHED_ENV
PEER_FAILED_EXIT = 3            # = n2q.train.distributed.PEER_FAILED_EXIT
SETTLE_S = 3.0                  # after a first failure: time for the root cause to show
STOP_GRACE_S = 5.0              # SIGTERM -> SIGKILL


def parse_devices(text: str) -> list[int]:
    """``"0,1,2,3"`` -> [0, 1, 2, 3]; UserError on anything else."""
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"option -multidev: '{text}' is not a comma-separated list of GPU "
                        "ids (e.g. -multidev 0,1,2,3)") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise UserError(f"option -multidev: '{text}': ids must be distinct and >= 0")
    return ids


def launched() -> bool:
    """Whether this process is one of the ranks a launcher (or torchrun) started."""
    return LAUNCHED_ENV in os.environ or "TORCHELASTIC_RUN_ID" in os.environ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cuda_count() -> int:
    """GPUs visible, asked in a child so that this process never imports torch."""
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


def launch(argv: list[str], devices: list[int]) -> int:
    """Run ``n2q argv`` as len(devices) ranks; returns the run's exit status."""
    world = len(devices)
    if world == 1:
        notice("-multidev with one device: a single process")
    gpus = _cuda_count()
    if gpus == 0:
        notice(f"-multidev {','.join(map(str, devices))}: no CUDA GPU available, running "
               f"{world} processes on the CPU (gloo)")
    elif max(devices) >= gpus:
        raise UserError(f"-multidev: GPU {max(devices)} does not exist (there are {gpus}, "
                        f"ids 0..{gpus - 1})")
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               WORLD_SIZE=str(world), N2Q_MULTIDEV_DEVICES=",".join(map(str, devices)))
    env[LAUNCHED_ENV] = "1"
    procs: list[subprocess.Popen] = []
    tails: list[deque[str]] = []
    for rank in range(world):
        env_r = dict(env, RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
        pipe = None if rank == 0 else subprocess.PIPE
        procs.append(subprocess.Popen([sys.executable, "-m", "n2q", *argv], env=env_r,
                                      stderr=pipe, text=True))
        tails.append(deque(maxlen=20))
        if pipe is not None:
            threading.Thread(target=_relay, args=(procs[-1], tails[-1]), daemon=True).start()
    try:
        return _watch(procs, tails)
    except KeyboardInterrupt:
        _stop(procs)
        raise


def _relay(proc: subprocess.Popen, tail: deque[str]) -> None:
    """Keep the last lines of a rank's stderr (shown if it fails)."""
    for line in proc.stderr:  # type: ignore[union-attr]
        tail.append(line.rstrip("\n"))


def _watch(procs: list[subprocess.Popen], tails: list[deque[str]]) -> int:
    """Wait for every rank; on the first failure stop the others and report the root cause."""
    while True:
        codes = [p.poll() for p in procs]
        if all(c == 0 for c in codes):
            return 0
        if any(c not in (None, 0) for c in codes):
            break
        time.sleep(0.1)
    deadline = time.monotonic() + SETTLE_S  # let the root cause exit too
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        codes = [p.poll() for p in procs]
        if any(c not in (None, 0, PEER_FAILED_EXIT) for c in codes):
            break
        time.sleep(0.05)
    codes = [p.poll() for p in procs]
    _stop(procs)
    time.sleep(0.1)  # the relay threads read the last lines
    causes = [r for r, c in enumerate(codes) if c not in (None, 0, PEER_FAILED_EXIT)]
    rank = causes[0] if causes else next(r for r, c in enumerate(codes) if c not in (None, 0))
    code = codes[rank]
    if rank == 0 and code is not None and code > 0:
        return 2 if code == 2 else 1  # rank 0 keeps the terminal: it printed its own line
    print(_failure_line(rank, len(procs), code, tails[rank]), file=sys.stderr, flush=True)
    return 2 if code == 2 else 1


def _failure_line(rank: int, world: int, code: int | None, tail: deque[str]) -> str:
    """The one line that ends a failed multi-process run."""
    if code is not None and code < 0:
        why = f"was killed by {signal.Signals(-code).name}"
    else:
        last = next((line for line in reversed(tail) if line.strip()), "")
        if last.startswith("Error: "):
            return last + " (the other processes were stopped)"
        why = f"failed (exit status {code})" + (f": {last.strip()}" if last else "")
    return (f"Error: rank {rank} of {world} {why}; the other processes were stopped "
            "(folders written so far are complete: resume with -l net_state...)")


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    end = time.monotonic() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
