"""What to tell a user who stops a run with Ctrl-C (torch-free: the CLI imports it).

``n2q.io.state.save_state`` records each state folder it completes; the message names the
latest full state (``net_state/``) when this run saved one, and otherwise says how to start
again instead of naming a folder that does not exist.
"""

from __future__ import annotations

from pathlib import Path

SAVED_STATES: list[Path] = []  # state folders completed by this process, in order


def record_saved_state(folder: Path) -> None:
    SAVED_STATES.append(Path(folder))


def interrupted_message(resumed_from: str | None = None) -> str:
    """The line printed on Ctrl-C (``resumed_from``: the ``-l`` folder of this command)."""
    names = [folder.name for folder in SAVED_STATES]
    if not names:
        if resumed_from:
            return (f"Interrupted before a new state was saved: rerun the same command "
                    f"(-l {resumed_from}) to resume.")
        return ("Interrupted before any state was saved: rerun the command without -l to "
                "start again.")
    latest = SAVED_STATES[-1]
    if "net_state" in names:  # the latest full state, beside the best one
        latest = next(f for f in reversed(SAVED_STATES) if f.name == "net_state")
    return (f"Interrupted: every folder written so far is complete; resume with -l {latest} "
            "(the latest state).")
