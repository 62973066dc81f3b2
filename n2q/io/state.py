"""Full training state (``net_state/``, ``-l``): a torch checkpoint written atomically.

``save_state(folder, net=net, optimizer=opt, epoch=3, ...)`` stores each object that has a
``state_dict()`` as that state dict and any other value as is; the RNG states of Python, NumPy
and torch (CPU and CUDA) are added under ``"rng"``. ``load_state(folder, net=net, ...)`` loads
the state dicts back into the objects given, restores the RNG states and returns the whole
dictionary (so the caller reads its counters: ``state["epoch"]``).

Values must be tensors or plain Python data (dict, list, tuple, str, int, float, bool, None):
the checkpoint is read back with ``torch.load(weights_only=True)``, which never runs pickled
code; ``save_state`` converts numpy values and refuses anything else up front, so that a bad
value fails at save time, not at resume.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2q.errors import UserError
from n2q.io.atomic import atomic_folder, refuse_half_written
from n2q.io.resume import record_saved_state

STATE_FILE = "state.pt"
CHECKSUM_FILE = "state.sha256"  # sha256sum's format: `sha256sum -c state.sha256` checks it
FORMAT_VERSION = 1
_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device,
          torch.Size)


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch generator states as plain data."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "position": int(position), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_as_python_state(states["python"]))
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_python_state(state: Any) -> tuple:
    """random.setstate wants tuples; a round trip may have turned them into lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _plain(value: Any, where: str) -> Any:
    """``value`` as data ``torch.load(weights_only=True)`` accepts: numpy scalars and arrays
    become Python scalars and tensors; anything not plain data is refused now (TypeError),
    not when resuming."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if type(value) in _PLAIN or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        return {_plain(key, where): _plain(item, f"{where}[{key!r}]")
                for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_plain(item, f"{where}[{index}]") for index, item in enumerate(value))
    raise TypeError(f"save_state: {where} is a {type(value).__name__}; only tensors and plain "
                    "Python data can be stored (give objects with state_dict() directly)")


def save_state(folder: str | Path, **objects: Any) -> Path:
    """Write ``folder/state.pt`` atomically (the whole folder is replaced); returns the folder."""
    payload: dict[str, Any] = {"format": FORMAT_VERSION}
    for name, value in objects.items():
        payload[name] = value.state_dict() if hasattr(value, "state_dict") else value
    payload["rng"] = rng_states()
    payload = _plain(payload, "state")
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        torch.save(payload, tmp / STATE_FILE)
        digest = _sha256(tmp / STATE_FILE)
        (tmp / CHECKSUM_FILE).write_text(f"{digest}  {STATE_FILE}\n", encoding="ascii")
    record_saved_state(folder)  # the Ctrl-C message names it
    return folder


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _damaged(folder: Path, why: str) -> UserError:
    return UserError(f"the saved state in this folder {why}: resume from another state folder "
                     "(net_state/ or net_state_validation/) or rerun without -l", file=folder)


def _read_checked(folder: Path) -> dict[str, Any]:
    """The saved dictionary of ``folder``, its checksum verified first: a flipped byte, a
    truncated or emptied file, or a foreign file is one line naming the folder."""
    path, checksum = folder / STATE_FILE, folder / CHECKSUM_FILE
    if not checksum.is_file():
        raise _damaged(folder, f"has no checksum ({CHECKSUM_FILE}): it is incomplete or was "
                               "not written by this n2q")
    expected = checksum.read_text(encoding="ascii", errors="replace").split()[:1]
    if expected != [_sha256(path)]:
        raise _damaged(folder, f"is damaged ({STATE_FILE} does not match its checksum)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (checksum right but unreadable: another torch's format)
        raise _damaged(folder, f"cannot be read ({STATE_FILE} is not a checkpoint this "
                               "PyTorch reads)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise _damaged(folder, "has an unknown format")
    return state


def load_state(folder: str | Path, *, restore_rng: bool = True, **targets: Any) -> dict[str, Any]:
    """Read ``folder/state.pt``; load each saved state dict into the target of the same name
    (``net=net, optimizer=opt``); restore the RNG states; return the saved dictionary."""
    folder = Path(folder)
    refuse_half_written(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        raise UserError(f"no saved state in {folder} (expected {path.name}, written by a "
                        "learning run into net_state/ or net_state_validation/)")
    state = _read_checked(folder)
    for name, target in targets.items():
        if name not in state:
            raise UserError(f"the saved state has no '{name}' (it holds: "
                            f"{', '.join(k for k in state if k not in ('format', 'rng'))})",
                            file=path)
        target.load_state_dict(state[name])
    if restore_rng:
        restore_rng_states(state["rng"])
    return state
