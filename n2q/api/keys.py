"""Python keyword arguments <-> INI keys, and the in-memory sections the API builds.

Every object of the Python API is a set of INI keys (``n2q.Conv(6, 5, no_bias=True)`` is the
section ``Type=Conv NbOutputs=6 KernelDims=5 5 NoBias=1``). The objects are checked and built
by the same code as an INI file (the cell classes' ``from_section``, the quantizer registry,
the solver and filler readers), so a bad value gets the message of its INI key:
``[conv1] NoBias: ...``. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from n2q.errors import UserError

# A Config built by the API: errors name the section and the key, not a file line.
API_FILE = ""
API_CONFIG_NAME = "python"

# Python names whose INI key is not the plain CamelCase of the words
_SPECIAL = {"onnx_init": "ONNX_init"}
# snake_case prefixes of dotted key families: mapping_size -> Mapping.Size
_FAMILIES = {"mapping_": "Mapping."}


def ini_key(name: str) -> str:
    """``apply_quantization`` -> ``ApplyQuantization``; a name with a capital is kept as
    written (``ApplyQuantization``, ``QWeight.Range``), for keys the conversion cannot spell."""
    if name in _SPECIAL:
        return _SPECIAL[name]
    if any(c.isupper() for c in name) or "." in name:
        return name
    for prefix, family in _FAMILIES.items():
        if name.startswith(prefix):
            return family + ini_key(name[len(prefix):])
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def ini_value(value: Any) -> str:
    """A Python value as INI text: booleans 1/0, sequences blank-separated, paths as is."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return " ".join(ini_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def camel_keys(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{python name: value} -> {prefix + INI key: text}; None values are left out."""
    return {prefix + ini_key(k): ini_value(v) for k, v in values.items() if v is not None}


class KeySet:
    """An ordered set of INI keys (``{"QWeight.Range": "15"}``) describing one thing.

    Subclasses validate in ``__init__`` by building a throw-away section and running the INI
    reader on it; :meth:`keys` gives the keys to write into a cell or provider section."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._keys = dict(keys)

    def keys(self) -> dict[str, str]:
        return dict(self._keys)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.keys() == self.keys()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self._keys.items())))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v}" for k, v in self._keys.items())
        return f"{type(self).__name__}({body})"


def new_config(path: str | Path = API_CONFIG_NAME) -> Any:
    """An empty Config whose sections the API adds (errors: ``[section] key: message``)."""
    from n2q.config import Config

    return Config(Path(path))


def add_section(cfg: Any, name: str, keys: Mapping[str, str], file: str = API_FILE) -> Any:
    """Append ``[name]`` with ``keys`` to ``cfg`` (a UserError if the name is taken);
    ``file``: what its messages name (the ONNX file of an ``[onnx]`` section)."""
    from n2q.config import Entry, Section

    if not name or any(c in name for c in "[]\n"):
        raise UserError(f"'{name}' is not a section name: use letters, digits, '_', '.' or '-'")
    sec = Section(cfg, name, [], file, 0)
    for key, text in keys.items():
        sec.entries[key] = Entry(text, file, 0)
    cfg.add_section(sec)
    return sec


def scratch_section(name: str, keys: Mapping[str, str]) -> Any:
    """A section alone in its own Config: what construction-time checks read."""
    return add_section(new_config(), name, keys)


def set_entries(sec: Any, keys: Mapping[str, str], drop_prefixes: Iterable[str] = ()) -> None:
    """Write ``keys`` into an existing section (a built cell's), first removing the keys
    that start with one of ``drop_prefixes`` (the previous quantizer's sub-keys)."""
    from n2q.config import Entry

    drop = tuple(drop_prefixes)
    edits = sec.__dict__.setdefault("api_edits", {})   # what Python changed, for to_ini()
    if drop:
        for key in [k for k in sec.entries if k.startswith(drop)]:
            del sec.entries[key]
            edits[key] = None
    for key, text in keys.items():
        sec.entries[key] = Entry(text, API_FILE, 0)
        edits[key] = text


def render_ini(cfg: Any, cells: Iterable[Any] = ()) -> str:
    """The INI text of a Config (``Network.to_ini()``): what to write in a file to get the
    same network from the command line. ``cells``: the built cells; those whose section is
    not in the Config (imported from ONNX) and that were changed in Python get a per-node
    section ``[<node output>]`` with those changes, which the ONNX importer applies."""
    lines = []
    for sec in cfg.sections:
        lines.append(f"[{sec.name}]")
        lines.extend(f"{k}={e.value}" for k, e in sec.entries.items())
        lines.append("")
    for cell in cells:
        sec = getattr(cell, "section", None)
        edits = getattr(sec, "api_edits", None)
        if not edits or cfg.get(sec.name) is sec:
            continue
        if any(k.startswith("ActivationFunction") for k in edits):
            raise UserError(f"to_ini(): the activation of {cell.name}, imported from ONNX, was "
                            "changed in Python; in an INI file that change belongs to the "
                            "section of the graph's activation node, which n2q does not "
                            "write: keep the Python script (or save_weights)")
        if any(v is None for v in edits.values()):
            raise UserError(f"to_ini(): a quantizer of {cell.name}, imported from ONNX, was "
                            "removed in Python, which a per-node section cannot express")
        lines.append(f"[{sec.name}]")
        lines.extend(f"{k}={v}" for k, v in edits.items())
        lines.append("")
    return "\n".join(lines)
