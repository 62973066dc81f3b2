"""Channel mappings: which input channels feed which outputs (Conv and Pool ``Mapping*`` keys).

N2D2 builds, per input, a boolean matrix map[output, channel] from (first match wins):
``Mapping.NbGroups`` / ``Mapping.ChannelsPerGroup`` (groups, output groups as even as
possible), a hand-written ``Mapping(<input>)=`` matrix (text rows = input channels, columns =
outputs), a diagonal pattern (``Mapping.Size/Stride/Offset`` (+X/Y), ``NbIterations``, also
per input as ``Mapping(<input>).Size``...), else all-to-all. The matrices of several inputs
are concatenated along channels. n2q then realises the whole matrix as a dense conv, a
grouped conv when it is block-diagonal with equal blocks, or a fixed weight mask otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from n2q.config import Section

MAPPING_PREFIXES = ("Mapping.", "Mapping(")
_PATTERN_KEYS = ("Size", "SizeX", "SizeY", "Stride", "StrideX", "StrideY", "Offset",
                 "OffsetX", "OffsetY", "NbIterations")


@dataclass(frozen=True)
class Pattern:
    """A diagonal mapping pattern; N2D2's defaults (0 size = whole axis, 0 iterations =
    max(outputs, channels))."""

    size_x: int = 1  # along outputs
    size_y: int = 1  # along channels
    stride_x: int = 1
    stride_y: int = 1
    offset_x: int = 0
    offset_y: int = 0
    nb_iterations: int = 0


def pattern_map(p: Pattern, nb_outputs: int, nb_channels: int) -> torch.Tensor:
    """bool [O, C] of a diagonal pattern, indices wrapping modulo O and C as in N2D2."""
    m = torch.zeros(nb_outputs, nb_channels, dtype=torch.bool)
    iters = p.nb_iterations or max(nb_outputs, nb_channels)
    sx = p.size_x or nb_outputs
    sy = p.size_y or nb_channels
    i = torch.arange(iters)
    # all (iteration, patch x, patch y) triples at once: [iters, sx, sy]
    outs = (p.offset_x + i[:, None, None] * p.stride_x + torch.arange(sx)[None, :, None])
    chans = (p.offset_y + i[:, None, None] * p.stride_y + torch.arange(sy)[None, None, :])
    outs, chans = torch.broadcast_tensors(outs, chans)
    m[outs.reshape(-1) % nb_outputs, chans.reshape(-1) % nb_channels] = True
    return m


def group_map(nb_outputs: int, nb_channels: int, nb_groups: int) -> torch.Tensor:
    """bool [O, C]: N2D2's groups (output group sizes (O - done) // (groups left))."""
    m = torch.zeros(nb_outputs, nb_channels, dtype=torch.bool)
    per_group = nb_channels // nb_groups
    out0 = 0
    for g in range(nb_groups):
        size = (nb_outputs - out0) // (nb_groups - g)
        m[out0:out0 + size, g * per_group:(g + 1) * per_group] = True
        out0 += size
    return m


def _read_pattern(section: Section, prefix: str, base: Pattern) -> Pattern:
    def pair(stem: str, bx: int, by: int) -> tuple[int, int]:
        if f"{prefix}.{stem}" in section:
            v = section.int(f"{prefix}.{stem}")
            return v, v
        return (section.int(f"{prefix}.{stem}X", bx), section.int(f"{prefix}.{stem}Y", by))

    sx, sy = pair("Size", base.size_x, base.size_y)
    tx, ty = pair("Stride", base.stride_x, base.stride_y)
    ox, oy = pair("Offset", base.offset_x, base.offset_y)
    it = section.int(f"{prefix}.NbIterations", base.nb_iterations)
    values = {"Size": (sx, sy), "Stride": (tx, ty), "Offset": (ox, oy), "NbIterations": (it,)}
    for stem, vals in values.items():
        if any(v < 0 for v in vals):
            raise section.error(f"{prefix}.{stem}", "must be >= 0")
    return Pattern(sx, sy, tx, ty, ox, oy, it)


def _matrix(section: Section, key: str, nb_outputs: int, nb_channels: int) -> torch.Tensor:
    words = section.strs(key)
    if len(words) != nb_outputs * nb_channels:
        raise section.error(key, f"has {len(words)} values, expected {nb_channels} rows "
                            f"(input channels) x {nb_outputs} columns (outputs) = "
                            f"{nb_outputs * nb_channels}")
    if any(w not in ("0", "1") for w in words):
        bad = next(w for w in words if w not in ("0", "1"))
        raise section.error(key, f"'{bad}' is not 0 or 1")
    # text is row-major [C][O]; return [O, C]
    values = torch.tensor([w == "1" for w in words], dtype=torch.bool)
    return values.reshape(nb_channels, nb_outputs).t().contiguous()


def _input_map(section: Section, input_name: str, nb_outputs: int, nb_channels: int,
               base: Pattern) -> torch.Tensor | None:
    """bool [O, C] of one input, or None for all-to-all (the common case, kept implicit)."""
    if "Mapping.NbGroups" in section or "Mapping.ChannelsPerGroup" in section:
        return _groups_from_keys(section, nb_outputs, nb_channels)
    names = [input_name] + (["env", "sp"] if input_name in ("sp", "env") else [])
    for n in names:
        if f"Mapping({n})" in section:
            return _matrix(section, f"Mapping({n})", nb_outputs, nb_channels)
    own = [n for n in names if section.subkeys(f"Mapping({n}).")]
    if section.subkeys("Mapping.") or own:
        prefix = f"Mapping({own[0]})" if own else "Mapping"
        p = _read_pattern(section, prefix, base) if own else base
        return pattern_map(p, nb_outputs, nb_channels)
    return None


def _groups_from_keys(section: Section, nb_outputs: int, nb_channels: int) -> torch.Tensor:
    return group_map(nb_outputs, nb_channels, _nb_groups(section, nb_outputs, nb_channels))


def _nb_groups(section: Section, nb_outputs: int, nb_channels: int) -> int:
    if "Mapping.NbGroups" in section and "Mapping.ChannelsPerGroup" in section:
        raise section.error("Mapping.ChannelsPerGroup",
                            "Mapping.NbGroups and Mapping.ChannelsPerGroup are mutually "
                            "exclusive: keep one")
    if "Mapping.NbGroups" in section:
        key, groups = "Mapping.NbGroups", section.int("Mapping.NbGroups")
        ok = groups > 0 and nb_channels % groups == 0
    else:
        key, per = "Mapping.ChannelsPerGroup", section.int("Mapping.ChannelsPerGroup")
        ok = per > 0 and nb_channels % per == 0
        groups = nb_channels // per if ok else 0
    if not ok or groups > nb_outputs:
        raise section.error(key, f"{section.str(key)} does not divide the {nb_channels} input "
                            f"channels into at most {nb_outputs} (NbOutputs) groups")
    return groups


def read_connectivity(section: Section, inputs: Sequence[tuple[str, int]], nb_outputs: int
                      ) -> Connectivity:
    """How a Conv realises its mapping. Group keys on one input with outputs divisible by the
    groups skip building the [O, C] matrix (depthwise convs of wide networks)."""
    if len(inputs) == 1 and ("Mapping.NbGroups" in section
                             or "Mapping.ChannelsPerGroup" in section):
        check_mapping_keys(section, [inputs[0][0]])
        groups = _nb_groups(section, nb_outputs, inputs[0][1])
        if nb_outputs % groups == 0:
            return Connectivity(groups, None)
    return realise(read_mapping(section, inputs, nb_outputs))


def check_mapping_keys(section: Section, input_names: Sequence[str]) -> None:
    """Refuse mapping keys that no rule reads (typos, matrices for non-inputs)."""
    allowed = {f"Mapping.{k}" for k in _PATTERN_KEYS + ("NbGroups", "ChannelsPerGroup")}
    names = set(input_names) | ({"sp", "env"} if {"sp", "env"} & set(input_names) else set())
    for n in names:
        allowed.add(f"Mapping({n})")
        allowed |= {f"Mapping({n}).{k}" for k in _PATTERN_KEYS}
    for key in section.keys():
        if key.startswith(MAPPING_PREFIXES) and key not in allowed:
            if key.startswith("Mapping("):
                msg = (f"names no input of this cell (inputs: {', '.join(input_names)})")
            else:
                msg = ("unknown mapping key; valid: Mapping.NbGroups, "
                       "Mapping.ChannelsPerGroup, Mapping.Size/Stride/Offset(+X/Y), "
                       "Mapping.NbIterations, Mapping(<input>)=")
            raise section.error(key, msg)


def read_mapping(section: Section, inputs: Sequence[tuple[str, int]], nb_outputs: int
                 ) -> torch.Tensor | None:
    """bool [O, sum C] for the inputs (name, channels) of a cell, in input order; None when
    every output sees every channel."""
    check_mapping_keys(section, [n for n, _ in inputs])
    base = _read_pattern(section, "Mapping", Pattern())
    maps = [_input_map(section, name, nb_outputs, c, base) for name, c in inputs]
    if all(m is None for m in maps):
        return None
    return torch.cat([torch.ones(nb_outputs, c, dtype=torch.bool) if m is None else m
                      for m, (_, c) in zip(maps, inputs, strict=True)], dim=1)


@dataclass
class Connectivity:
    """How a map is realised: ``groups`` for torch, and ``mask`` [O, C/groups] or None."""

    groups: int
    mask: torch.Tensor | None


def realise(map_oc: torch.Tensor | None) -> Connectivity:
    """Dense, grouped (block-diagonal, equal blocks) or masked; bool map [O, C] or None."""
    if map_oc is None or bool(map_oc.all()):
        return Connectivity(1, None)
    nb_outputs, nb_channels = map_oc.shape
    per_group = int(map_oc[0].sum())
    if per_group > 0 and nb_channels % per_group == 0:
        groups = nb_channels // per_group
        if nb_outputs % groups == 0:
            blocks = torch.block_diag(*[torch.ones(nb_outputs // groups, per_group,
                                                   dtype=torch.bool)] * groups)
            if torch.equal(blocks, map_oc):
                return Connectivity(groups, None)
    return Connectivity(1, map_oc.clone())

