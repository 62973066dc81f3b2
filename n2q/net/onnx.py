"""Importing an ONNX graph as n2q cells, with N2D2's INI overrides (spec/onnx.md).

A ``Type=ONNX`` layer section is replaced by one cell per ONNX node, named after the node's
FIRST OUTPUT (N2D2's naming, so INI overrides written for N2D2 apply). Each node becomes an
ordinary layer section, as a user would write it by hand: the structural keys come from the
graph (KernelDims, NbOutputs, StrideDims...), the rest from the INI:

- ``[<onnx>:Conv_def]``, ``Fc_def``, ``BatchNorm_def``, ``Pool_def``, ``Dropout_def``: every
  node of that kind;
- ``[<node output>]``: that node, INSTEAD of the ``_def`` block (inherit it to add to it);
- ``[<relu output>]``: Relu/Clip/LeakyRelu are not cells, they become the activation of the
  cell before them; this section sets its ``ActivationFunction`` / ``QAct*`` keys.

The section is then built by the net package's own ``from_section`` (same key checking,
fillers, solvers, quantizer keys) and, with ``ONNX_init=1``, the initializers are copied in.
Node translations live in :mod:`n2q.net.onnx_ops` (registry ``ONNX_OPS``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from n2q.config import Config, Section
from n2q.config.model import Entry
from n2q.errors import UserError, notice

if TYPE_CHECKING:
    import onnx

    from n2q.net.base import Cell
    from n2q.net.onnx_graph import OnnxGraph

ONNX_KEYS = ("Input", "Type", "File", "ONNX_init", "Ignore", "IgnoreInputSize", "Transpose",
             "Model", "DataType")
# The `_def` blocks of an ONNX section, by the cell type they apply to.
DEF_BLOCKS = {"Conv": "Conv_def", "Fc": "Fc_def", "BatchNorm": "BatchNorm_def",
              "Pool": "Pool_def", "Dropout": "Dropout_def"}
# Keys a Relu-output section may set on the cell the Relu folds into.
ACTIVATION_OVERRIDE_KEYS = ("ActivationFunction", "QAct", "QActSolver")
# Keys the graph fixes but the user may set (kept from the INI when present).
USER_SETTABLE = frozenset({"NoBias", "Epsilon", "MovingAverageMomentum", "Dropout", "WithLoss"})


@dataclass
class CellSpec:
    """One cell to build: what the graph says, before the INI keys are merged in."""

    name: str
    type: str
    inputs: list[str]
    node: onnx.NodeProto | None
    keys: dict[str, str] = field(default_factory=dict)       # structural, from the graph
    params: dict[str, np.ndarray] = field(default_factory=dict)  # initializers to copy
    activation: dict[str, str] = field(default_factory=dict)  # folded Relu/Clip/...
    act_sections: list[str] = field(default_factory=list)    # their output names
    onnx_shape: tuple[int, int, int] = (0, 0, 0)              # output (C, H, W), ONNX layout
    zero_bias: bool = False     # a bias the graph does not have: 0 keeps the graph's result
    tensors: list[str] = field(default_factory=list)  # ONNX data inputs (generic cells)


@dataclass
class OnnxImport:
    """What the builder adds to the network (ARCHITECTURE.md, ONNX import)."""

    cells: list[Cell]
    outputs: list[str]
    aliases: dict[str, str]
    sections: list[Section] = field(default_factory=list)
    graph: OnnxGraph | None = None


@dataclass
class OnnxOptions:
    """The keys of the ``Type=ONNX`` section."""

    path: Path
    init: bool = True
    ignore: list[str] = field(default_factory=list)
    ignore_input_size: bool = False
    transpose: bool = False

    @classmethod
    def from_section(cls, section: Section) -> OnnxOptions:
        section.check_keys(ONNX_KEYS, "an ONNX section")
        base = Path(section.file).parent if section.file else Path.cwd()
        path = section.path("File", base=base)
        return cls(path=path, init=bool(section.bool("ONNX_init", True)),
                   ignore=section.strs("Ignore", []),
                   ignore_input_size=bool(section.bool("IgnoreInputSize", False)),
                   transpose=bool(section.bool("Transpose", False)))


# -- public entry points -----------------------------------------------------------------------
def import_onnx(cfg: Config, section: Section,
                input_shapes: Sequence[tuple[int, int, int]]) -> OnnxImport:
    """Build the cells of the ONNX graph named by ``section`` (``Type=ONNX``).

    ``input_shapes``: (C, H, W) of each name in the section's ``Input=``, in order.
    """
    from tqdm import tqdm

    from n2q.net.onnx_ops import translate

    options = OnnxOptions.from_section(section)
    inputs = [n.strip() for n in section.str("Input").split(",") if n.strip()]
    graph = _load(section, options, list(input_shapes))
    if len(graph.data_inputs) != len(inputs):
        raise section.error("Input", f"the ONNX graph has {len(graph.data_inputs)} data "
                            f"input(s) ({', '.join(graph.data_inputs)}) but Input= names "
                            f"{len(inputs)}: give one Input per graph input")
    specs, aliases, outputs = translate(graph, section, options, inputs)
    _check_override_sections(cfg, section, graph, specs, aliases)
    shapes = {name: tuple(s) for name, s in zip(inputs, input_shapes, strict=True)}
    cells, sections, dropped = [], [], []
    for spec in tqdm(specs, desc=f"Importing {options.path.name}", unit="cell", leave=False,
                     disable=None if len(specs) >= 100 else True):
        cell_section = synthesize_section(cfg, section, spec)
        cell = _build_cell(cell_section, spec, shapes, graph)
        if options.init:
            dropped += copy_initializers(cell, spec, section)
        shapes[spec.name] = tuple(cell.out_shape)
        cells.append(cell)
        sections.append(cell_section)
    if dropped:
        graph.notes.append(f"{len(dropped)} parameter(s) of the graph not imported because the "
                           f"INI removes them (NoBias=1): {', '.join(dropped[:3])}"
                           + (", ..." if len(dropped) > 3 else ""))
    for note in graph.notes:
        notice(f"{where(section)} {note}")
    return OnnxImport(cells=cells, outputs=outputs, aliases=aliases, sections=sections,
                      graph=graph)


def _load(section: Section, options: OnnxOptions,
          input_shapes: list[tuple[int, int, int]]) -> OnnxGraph:
    """Load the graph, sized to the provider when the file's size differs and
    IgnoreInputSize=1 (or when the file leaves the size open)."""
    from n2q.net.onnx_graph import GraphError, data_input_dims, load_graph, read_model

    if not options.path.is_file():
        raise section.error("File", f"ONNX file not found: {options.path} (install the zoo "
                            "models with `python tools/install_onnx_models.py NAME`, or fix "
                            "the path; relative paths are taken from the INI's folder)")
    try:
        model = read_model(options.path)
    except GraphError as exc:
        raise section.error("File", str(exc)) from None
    declared = data_input_dims(model)
    impose = None
    wanted = [tuple(s) for s in input_shapes]
    if options.transpose:  # the provider's (H, W) is the graph's (W, H)
        wanted = [(c, w, h) for c, h, w in wanted]
    for (name, dims), shape in zip(declared, wanted, strict=False):
        file_chw = tuple(dims[1:])
        if None in file_chw or len(file_chw) != 3:
            impose = wanted
        elif file_chw != shape:
            if not options.ignore_input_size:
                raise section.error("File", f"the graph input '{name}' is "
                                    f"{'x'.join(map(str, file_chw))} (CxHxW) but the "
                                    f"provider gives {'x'.join(map(str, shape))}: resize "
                                    "[sp] or set IgnoreInputSize=1 to run the graph at the "
                                    "provider's size")
            impose = wanted
    try:
        return load_graph(options.path, impose, model)
    except GraphError as exc:
        raise section.error("File", str(exc)) from None


def where(section: Section) -> str:
    """``FILE:LINE: [SECTION]`` of a notice (no line for the INI of ``n2q model.onnx``)."""
    return f"{section.file}:{section.line}: [{section.name}]" if section.line else \
        f"{section.file}: [{section.name}]"


# -- INI overrides -----------------------------------------------------------------------------
def node_sections(onnx_section: Section, spec: CellSpec) -> list[str]:
    """Names of the per-node sections of a cell, first found wins: ``[<output>]`` (N2D2's
    usual form), ``[<onnx>:<output>]`` and ``[<onnx>:<node name>]`` (MobileNet_v1_ONNX_transfer.ini
    writes ``[onnx:Conv__250]`` for the node whose output is ``Conv__250:0``)."""
    names = [spec.name, f"{onnx_section.name}:{spec.name}"]
    if spec.node is not None and spec.node.name:
        names.append(f"{onnx_section.name}:{spec.node.name}")
    return names


def override_block(cfg: Config, onnx_section: Section, spec: CellSpec) -> Section | None:
    """The INI section that configures this cell: a per-node section, else
    ``[<onnx>:<Type>_def]``."""
    for name in node_sections(onnx_section, spec):
        own = cfg.get(name)
        if own is None or own is onnx_section:
            continue
        if "Input" in own.entries:
            raise own.error("Input", f"this section is a layer named like the ONNX node "
                            f"'{spec.name}' of [{onnx_section.name}]: rename the layer")
        return own
    block = DEF_BLOCKS.get(spec.type)
    return cfg.get(f"{onnx_section.name}:{block}") if block else None


def synthesize_section(cfg: Config, onnx_section: Section, spec: CellSpec) -> Section:
    """The layer section of one imported cell: the user's block, the graph's keys, the folded
    activation and its override, ``Input=`` and ``Type=``."""
    file, line = onnx_section.line_of("File")
    block = override_block(cfg, onnx_section, spec)
    per_node = block is not None and block.name in node_sections(onnx_section, spec)
    where = block if per_node else onnx_section
    sec = Section(cfg, spec.name, [], where.file, where.line)
    if block is not None:
        block.used = True
        sec.entries.update(block.entries)
        sec.variables.update(block.variables)
        _refuse_graph_keys(block, spec)

    def put(key: str, value: str) -> None:
        sec.entries[key] = Entry(value, file, line)

    for key, value in spec.keys.items():
        if key in USER_SETTABLE and block is not None and key in block:
            continue  # the INI wins (its own section or its ConfigSection)
        put(key, value)
    _merge_activation(cfg, sec, spec, put)
    put("Input", ",".join(spec.inputs))
    put("Type", f"ONNX:{spec.node.op_type}" if spec.type == "ONNX" else spec.type)
    sec.used = True
    return sec


def _refuse_graph_keys(block: Section, spec: CellSpec) -> None:
    """Keys that describe the graph's structure cannot be changed from the INI."""
    for key in block.entries:
        fixed = key in spec.keys and key not in USER_SETTABLE
        if fixed or (key.startswith("Mapping") and spec.type in ("Conv", "Pool")):
            shown = spec.keys.get(key)
            value = f" (the graph gives {key}={shown})" if shown is not None else ""
            raise block.error(key, f"is fixed by the ONNX graph for '{spec.name}'{value}: "
                              "remove it from this section")


def _merge_activation(cfg: Config, sec: Section, spec: CellSpec, put: Any) -> None:
    """Precedence: a Relu-output section > the folded graph activation > the cell's block."""
    if spec.activation:
        for key in [k for k in sec.entries if k == "ActivationFunction"
                    or k.startswith("ActivationFunction.")]:
            del sec.entries[key]
        for key, value in spec.activation.items():
            put(key, value)
    for name in spec.act_sections:
        override = cfg.get(name)
        if override is None or "Input" in override.entries:
            continue
        override.used = True
        keys = override.keys()
        for key in keys:
            if name == spec.name:   # a standalone Activation cell: its own section
                break
            if not key.startswith(ACTIVATION_OVERRIDE_KEYS) and key != "ConfigSection":
                raise override.error(key, f"cannot be set here: '{name}' is not a cell (it "
                                     f"folds into '{spec.name}'); only ActivationFunction*, "
                                     "QAct* and QActSolver* keys apply, put others in "
                                     f"[{spec.name}]")
        if "ActivationFunction" in override:
            for key in [k for k in sec.entries if k.startswith("ActivationFunction.")]:
                del sec.entries[key]
        for key in keys:
            if key != "ConfigSection":
                sec.entries[key] = override.entry(key)
        sec.variables.update(override.variables)


def _check_override_sections(cfg: Config, onnx_section: Section, graph: OnnxGraph,
                             specs: list[CellSpec], aliases: dict[str, str]) -> None:
    """Sections that look like overrides of this graph but name no node are errors."""
    known = {s.name for s in specs} | set(aliases)
    node_names = {s.node.name for s in specs if s.node is not None and s.node.name}
    prefix = f"{onnx_section.name}:"
    valid_defs = sorted(DEF_BLOCKS.values())
    single = sum(s.entries.get("Type") is not None and s.entries["Type"].value == "ONNX"
                 for s in cfg.sections) == 1
    referenced = _referenced_sections(cfg)
    for sec in cfg.sections:
        if sec.name.startswith(prefix):
            kind = sec.name[len(prefix):]
            if kind not in valid_defs and kind not in known | node_names:
                raise UserError(f"'{kind}' is neither a block kind ("
                                + ", ".join(f"{prefix}{v}" for v in valid_defs)
                                + ") nor a node of the graph"
                                f"{_close(kind, valid_defs + sorted(known | node_names), 3)}",
                                file=sec.file, line=sec.line, section=sec.name)
            sec.used = True   # a valid block that no node of this graph needs is fine
            continue
        if sec.name in known or sec is onnx_section or "Input" in sec.entries:
            continue
        if any(b.startswith(prefix) for b in sec.bases) or (
                single and _looks_like_override(sec, known, referenced)):
            raise UserError(f"names no node of the ONNX graph of [{onnx_section.name}]"
                            f"{_close(sec.name, sorted(known), 3)}", file=sec.file,
                            line=sec.line, section=sec.name)


def _referenced_sections(cfg: Config) -> set[str]:
    """Sections some other section names as a base or in ConfigSection= (so not overrides)."""
    names: set[str] = set()
    for sec in cfg.sections:
        names.update(sec.bases)
        entry = sec.entries.get("ConfigSection")
        if entry is not None:
            names.update(entry.value.replace(",", " ").split())
    return names


def _looks_like_override(sec: Section, nodes: set[str], referenced: set[str]) -> bool:
    """A section written to configure a node: ``[name]SomeBlock_def`` (ReluQ_def), or a
    section nothing refers to whose name is a near miss of a node name (a typo)."""
    name = sec.name
    if name.endswith("_def") or ".Target" in name or name.endswith(".config") \
            or name in ("sp", "env", "database") or name.startswith(("sp.", "env.")) \
            or name in referenced:
        return False
    if any(b.endswith("_def") for b in sec.bases):
        return True
    return bool(difflib.get_close_matches(name, sorted(nodes), n=1, cutoff=0.9))


def _close(word: str, candidates: list[str], n: int = 1) -> str:
    close = difflib.get_close_matches(word, candidates, n=n, cutoff=0.5)
    if not close:
        return ""
    if n == 1:
        return f" (did you mean {close[0]}?)"
    return f" (closest node names: {', '.join(close)})"


# -- building ----------------------------------------------------------------------------------
def _build_cell(sec: Section, spec: CellSpec, shapes: dict[str, tuple],
                graph: OnnxGraph) -> Cell:
    from n2q.net.base import CELL_TYPES
    from n2q.net.onnx_cell import GENERIC_TYPE, build_generic_cell

    if spec.type == GENERIC_TYPE:
        cell = build_generic_cell(graph, spec, sec, [shapes[n] for n in spec.inputs],
                                  spec.tensors)
        cell.section = sec
        return cell
    cls = CELL_TYPES.get(spec.type)
    if cls is None:
        raise sec.error("Type", f"n2q has no {spec.type} cell type to import this node")
    input_shapes = [shapes[name] for name in spec.inputs]
    c = input_shapes[0][0] if cls.MULTI_INPUT else sum(s[0] for s in input_shapes)
    in_shape = (c, *input_shapes[0][1:])
    try:
        cell = cls.from_section(sec, spec.name, spec.inputs, in_shape, input_shapes)
    except ValueError as exc:
        raise sec.error(None, str(exc)) from None
    cell.section = sec
    return cell


def copy_initializers(cell: Cell, spec: CellSpec, onnx_section: Section) -> list[str]:
    """ONNX_init=1: the graph's weights into the cell (shapes checked). Returns the graph
    parameters the cell has no place for (a bias dropped by NoBias=1 in the INI)."""
    import torch

    dropped = []
    with torch.no_grad():
        for attr, array in spec.params.items():
            target = getattr(cell, attr, None)
            if target is None:
                dropped.append(f"{spec.name}.{attr}")
                continue
            value = torch.as_tensor(np.array(array, dtype=np.float32), dtype=target.dtype)
            if value.numel() != target.numel():
                raise onnx_section.error("File", f"'{spec.name}': the graph's {attr} has "
                                         f"shape {list(array.shape)}, the cell expects "
                                         f"{list(target.shape)}")
            target.copy_(value.reshape(target.shape))
        bias = getattr(cell, "bias", None)
        if spec.zero_bias and bias is not None and "bias" not in spec.params:
            bias.zero_()
    return dropped
