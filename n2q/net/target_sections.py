"""Target sections (``[<cell>.Target]``, spec/network.md): which cell outputs are scored
against the labels, and how."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from n2q.config import Config, Section
from n2q.errors import UserError

TARGET_SECTION = re.compile(r"^(?P<cell>.+)\.Target(-.*)?$")
TARGET_KEYS = ("Type", "TargetValue", "DefaultValue", "TopN", "LabelsMapping",
               "CreateMissingLabels")


# -- targets ------------------------------------------------------------------------------------
@dataclass
class Target:
    """A ``[<cell>.Target]`` section: that cell's output is scored against the labels."""

    section: str
    cell: str
    type: str = "TargetScore"
    target_value: float = 1.0
    default_value: float = 0.0
    top_n: int = 1
    labels_mapping: Path | None = None
    create_missing_labels: bool = False


def read_target(section: Section, cell: str) -> Target:
    section.check_keys(TARGET_KEYS, "a target")
    top_n = section.int("TopN", 1)
    if top_n < 1:
        raise section.error("TopN", f"must be >= 1, got {top_n}")
    return Target(section=section.name, cell=cell,
                  type=section.enum("Type", ("TargetScore", "Target"), "TargetScore"),
                  target_value=section.float("TargetValue", 1.0),
                  default_value=section.float("DefaultValue", 0.0), top_n=top_n,
                  labels_mapping=section.path("LabelsMapping", None,
                                              base=Path(section.file).parent),
                  create_missing_labels=bool(section.bool("CreateMissingLabels", False)))


def read_targets(cfg: Config, cells: dict[str, Any], alias: dict[str, str]) -> list[Target]:
    targets = []
    for sec in cfg.sections:
        m = TARGET_SECTION.match(sec.name)
        if m is None or "Input" in sec.entries:
            continue
        cell = m.group("cell")
        cell = alias.get(cell, cell)
        if cell not in cells:
            raise sec.error(None, f"target of an unknown cell '{m.group('cell')}': name the "
                            "section [<cell>.Target] after a layer of this file")
        targets.append(read_target(sec, cell))
    if not targets:
        raise UserError("no target: add a [<cell>.Target] section (e.g. [softmax.Target]) "
                        "for the output layer", file=cfg.path)
    return targets
