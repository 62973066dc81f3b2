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

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from n2q.errors import UserError
from n2q.io.atomic import atomic_folder

STATE_FILE = "state.pt"
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
    return folder


def load_state(folder: str | Path, *, restore_rng: bool = True, **targets: Any) -> dict[str, Any]:
    """Read ``folder/state.pt``; load each saved state dict into the target of the same name
    (``net=net, optimizer=opt``); restore the RNG states; return the saved dictionary."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise UserError(f"no saved state in {folder} (expected {path.name}, written by a "
                        "learning run into net_state/ or net_state_validation/)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: tell the user which one
        raise UserError(f"cannot read the saved state: {error}", file=path) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise UserError("not an n2q saved state (unknown format)", file=path)
    for name, target in targets.items():
        if name not in state:
            raise UserError(f"the saved state has no '{name}' (it holds: "
                            f"{', '.join(k for k in state if k not in ('format', 'rng'))})",
                            file=path)
        target.load_state_dict(state[name])
    if restore_rng:
        restore_rng_states(state["rng"])
    return state
