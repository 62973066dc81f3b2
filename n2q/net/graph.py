"""The network builder: INI layer sections -> :class:`Network` (spec/network.md).

Layers are the sections with ``Input=``; they may appear in any order in the file. Cells are
built in dependency order (file order among the ready ones), each publishing its generated
keys (``[conv1]_NbOutputs``...) before the cells after it read their values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from n2q.config import Config, Section, read_globals
from n2q.errors import UserError, did_you_mean, too_large
from n2q.net.base import CELL_TYPES, Cell, Shape
from n2q.net.target_sections import Target, read_targets
from n2q.shared import Shared

PROVIDER_NAMES = ("sp", "env")
SPIKING_ENV_KEYS = ("StimulusType", "PeriodMin", "PeriodMeanMin", "PeriodMeanMax",
                    "PeriodRelStdDev", "PeriodStdDevMax", "DiscardedLateStimuli")
# -- an nn.ModuleDict that accepts N2D2 cell names ("fc1.drop") ---------------------------------
_DOT = "\u00b7"


class CellDict(nn.ModuleDict):
    """name -> Cell in execution order. torch refuses '.' in module names; names are
    escaped internally and always shown as written in the INI."""

    @staticmethod
    def _key(name: str) -> str:
        key = name.replace(".", _DOT)
        return _DOT + key if hasattr(CellDict, key) or key.startswith(_DOT) else key

    @staticmethod
    def _name(key: str) -> str:
        return (key[1:] if key.startswith(_DOT) else key).replace(_DOT, ".")

    def __getitem__(self, name: str) -> Cell:  # type: ignore[override]
        return self._modules[self._key(name)]  # type: ignore[return-value]

    def __setitem__(self, name: str, cell: nn.Module) -> None:  # type: ignore[override]
        self.add_module(self._key(name), cell)

    def __delitem__(self, name: str) -> None:  # type: ignore[override]
        del self._modules[self._key(name)]

    def __contains__(self, name: object) -> bool:  # type: ignore[override]
        return isinstance(name, str) and self._key(name) in self._modules

    def __iter__(self):  # type: ignore[override]
        return (self._name(k) for k in self._modules)

    def keys(self) -> list[str]:  # type: ignore[override]
        return [self._name(k) for k in self._modules]

    def items(self) -> list[tuple[str, Cell]]:  # type: ignore[override]
        return [(self._name(k), m) for k, m in self._modules.items()]  # type: ignore[misc]

    def values(self) -> list[Cell]:  # type: ignore[override]
        return list(self._modules.values())  # type: ignore[arg-type]


# -- the network --------------------------------------------------------------------------------
class Network(nn.Module):
    """Cells in execution order; ``forward`` returns the target cells' outputs."""

    def __init__(self, input_shape: Shape, cells: Iterable[Cell], targets: Sequence[Target],
                 config: Config | None = None) -> None:
        super().__init__()
        self.input_shape: Shape = tuple(int(v) for v in input_shape)  # type: ignore[assignment]
        self.cells = CellDict()
        self.inputs: dict[str, list[str]] = {}
        for cell in cells:
            self.cells[cell.name] = cell
            self.inputs[cell.name] = list(cell.inputs)
        self.targets = list(targets)
        self._config = Shared(config)
        self._plan()

    @property
    def config(self) -> Config | None:
        """The Config the network was built from (shared, not copied, by deepcopy)."""
        return self._config.value

    def _plan(self) -> None:
        """Which outputs can be dropped after each cell (memory in inference)."""
        last_use: dict[str, str] = {}
        for name, ins in self.inputs.items():
            for i in ins:
                last_use[i] = name
        keep = {t.cell for t in self.targets}
        self._free_after: dict[str, list[str]] = {n: [] for n in self.inputs}
        for src, user in last_use.items():
            if src not in keep:
                self._free_after[user].append(src)

    def consumers(self, name: str) -> list[str]:
        return [n for n, ins in self.inputs.items() if name in ins]

    def loss_kind(self, name: str) -> str:
        """How ``forward`` gives a target cell's output: "softmax_ce" (Softmax WithLoss=1:
        the logits), "logistic_bce" (LogisticWithLoss activation: the logits), or "output"."""
        cell = self.cells[name]
        if getattr(cell, "with_loss", False):
            return "softmax_ce"
        if getattr(cell.activation, "with_loss", False):
            return "logistic_bce"
        return "output"

    def _run(self, x: torch.Tensor, keep_all: bool) -> dict[str, torch.Tensor]:
        outs: dict[str, torch.Tensor] = {"sp": x}
        logits: dict[str, torch.Tensor] = {}
        kinds = {t.cell: self.loss_kind(t.cell) for t in self.targets} if not keep_all else {}
        for name, cell in self.cells.items():
            ins = [outs[i] for i in self.inputs[name]]
            if cell.MULTI_INPUT:
                arg = ins
            else:
                arg = ins[0] if len(ins) == 1 else torch.cat(ins, dim=1)
            kind = kinds.get(name, "output")
            if kind == "logistic_bce":  # the loss wants the pre-sigmoid values
                logits[name] = cell.op(arg)
                outs[name] = cell.post(logits[name])
            else:
                if kind == "softmax_ce":
                    logits[name] = arg
                outs[name] = cell(arg)
            if not keep_all:
                for done in self._free_after[name]:
                    outs.pop(done, None)
        if keep_all:
            del outs["sp"]
            return outs
        return {t.cell: logits.get(t.cell, outs.get(t.cell)) for t in self.targets}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._run(x, keep_all=False)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every cell's output (after its activation and activation quantizer)."""
        return self._run(x, keep_all=True)

    def nb_params(self) -> int:
        return sum(c.nb_params() for c in self.cells.values())

    def summary(self) -> str:
        rows = [("layer", "type", "input(s)", "output", "params", "quantizers")]
        for name, cell in self.cells.items():
            q = [f"W:{_label(cell.weight_quantizer)}"] if cell.weight_quantizer else []
            q += [f"A:{_label(cell.act_quantizer)}"] if cell.act_quantizer else []
            act = type(cell.activation).__name__
            kind = cell.type + ("" if act == "Identity" else f"+{act}")
            rows.append((name, kind, ",".join(self.inputs[name]),
                         "x".join(str(v) for v in cell.out_shape), f"{cell.nb_params():,}",
                         ", ".join(q) or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.rjust(w) if i == 4 else v.ljust(w)
                           for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                 for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        inp = "x".join(str(v) for v in self.input_shape)
        lines.append(f"input {inp}; {len(self.cells)} cells; {self.nb_params():,} "
                     f"parameters; targets: {', '.join(t.cell for t in self.targets)}")
        return "\n".join(lines)


def _label(quantizer: nn.Module) -> str:
    """A quantizer in the summary: its own short label ("SAT R=15") or its class name."""
    describe = getattr(quantizer, "describe", None)
    return describe() if callable(describe) else type(quantizer).__name__


# -- building -----------------------------------------------------------------------------------
def check_not_spiking(cfg: Config) -> None:
    """Spiking models (Model=Spike*, [env] spiking keys) are out of scope: a clear refusal
    instead of a crash (DefaultModel=Spike* is refused by read_globals)."""
    msg = "spiking models are not supported by n2q (frame-based training only)"
    env = cfg.get("env")
    if env is not None:
        for key in SPIKING_ENV_KEYS:
            if key in env:
                raise env.error(key, msg)
    for sec in cfg.sections:
        if "Input" in sec.entries and "Model" in sec:  # also from a base or ConfigSection
            if sec.str("Model").startswith("Spike"):
                raise sec.error("Model", msg)


def layer_sections(cfg: Config) -> list[Section]:
    return [s for s in cfg.sections if "Input" in s.entries]


def _input_names(section: Section) -> list[str]:
    text = section.str("Input")
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise section.error("Input", "is empty: name the provider (sp) or earlier cells")
    return ["sp" if n in PROVIDER_NAMES else n for n in names]


def _find_cycle(start: str, pending: dict[str, list[str]]) -> list[str]:
    path, seen = [start], {start}
    node = start
    while True:
        node = next(i for i in pending[node] if i in pending)  # exists: else it was ready
        if node in seen:
            return path[path.index(node):] + [node]
        path.append(node)
        seen.add(node)


def _stuck_error(pending: dict[str, list[str]], sections: dict[str, Section],
                 built: Callable[[str], bool]) -> UserError:
    """Nothing is ready: an input that is neither built nor pending is unknown; otherwise the
    pending sections wait on each other (a cycle)."""
    for name, ins in pending.items():
        for i in ins:
            if i not in pending and not built(i):
                sec = sections[name]
                if i in sec.config:  # a base block, a config section...
                    return sec.error("Input", f"[{i}] is not a layer (it has no Input=): "
                                     "name the provider (sp) or a layer of this file")
                known = [n for n in sections if n != name] + ["sp"]
                return sec.error("Input", f"unknown input '{i}'{did_you_mean(i, known)}: "
                                 "name the provider (sp) or a cell of this file")
    cycle = _find_cycle(next(iter(pending)), pending)
    sec = sections[cycle[0]]
    return sec.error("Input", f"the inputs form a cycle: {' -> '.join(cycle)}")


def _publish(cfg: Config, cell: Cell) -> None:
    c, h, w = cell.in_shape
    o, oh, ow = cell.out_shape
    for key, v in (("_NbChannels", c), ("_ChannelsWidth", w), ("_ChannelsHeight", h),
                   ("_NbOutputs", o), ("_OutputsWidth", ow), ("_OutputsHeight", oh)):
        cfg.set_generated(cell.name, key, v)


class _Builder:
    def __init__(self, cfg: Config, input_shape: Shape, insert_bn: bool = False) -> None:
        self.cfg = cfg
        self.shapes: dict[str, Shape] = {"sp": tuple(input_shape)}  # type: ignore[dict-item]
        self.alias: dict[str, str] = {}  # ONNX section / replaced cell -> output cell
        self.cells: list[Cell] = []
        self.insert_bn = insert_bn

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def ready(self, ins: Sequence[str]) -> bool:
        return all(self.resolve(i) in self.shapes for i in ins)

    def build(self, sections: list[Section]) -> None:
        by_name = {s.name: s for s in sections}
        pending = {s.name: _input_names(s) for s in sections}
        onnx = {s.name for s in sections if "Type" in s and s.str("Type") == "ONNX"}
        while pending:
            name = next((n for n, ins in pending.items() if self.ready(ins)), None)
            if name is None:
                raise _stuck_error(pending, by_name, lambda i: self.ready([i]))
            self.add_section(by_name[name], self.parents(pending.pop(name), onnx))

    def parents(self, names: list[str], onnx: set[str]) -> list[str]:
        """The cells feeding a layer. As in N2D2, an ONNX section named next to other inputs
        (``Input=onnx,<node output>``) only orders the layer after the import: it is not an
        input. Named alone (``Input=onnx``), it stands for the graph's first output (n2q: N2D2
        would give the layer no input at all)."""
        kept = [n for n in names if n not in onnx] or names
        return [self.resolve(n) for n in kept]

    def add_section(self, section: Section, inputs: list[str]) -> None:
        type_name = section.enum("Type", sorted(CELL_TYPES) + ["ONNX"])
        if type_name == "ONNX":
            self.add_onnx(section, inputs)
            return
        shapes = [self.shapes[i] for i in inputs]
        cls = CELL_TYPES[type_name]
        in_shape = shapes[0] if cls.MULTI_INPUT else _concat(section, inputs, shapes)
        try:
            cell = cls.from_section(section, section.name, inputs, in_shape, shapes)
        except ValueError as e:
            raise section.error(None, str(e)) from None
        except (MemoryError, RuntimeError) as e:  # a layer too large: located UserError
            raise too_large(section, e) from None
        cell.section = section
        self.add_cell(cell)
        if self.insert_bn and type_name == "Conv":
            self.add_batchnorm_after(cell)

    def add_cell(self, cell: Cell) -> None:
        self.cells.append(cell)
        self.shapes[cell.name] = cell.out_shape
        _publish(self.cfg, cell)

    def add_batchnorm_after(self, conv: Cell) -> None:
        """InsertBatchNormAfterConv=1: N2D2 adds <conv>_batchnorm, which takes over the
        conv's activation and its consumers."""
        from n2q.net.batchnorm import BatchNormCell  # noqa: PLC0415

        bn = BatchNormCell(f"{conv.name}_batchnorm", [conv.name], conv.out_shape,
                           activation=conv.activation)
        conv.activation = nn.Identity()
        bn.section = conv.section
        self.add_cell(bn)
        self.alias[conv.name] = bn.name

    def add_onnx(self, section: Section, inputs: list[str]) -> None:
        from n2q.net.onnx import import_onnx  # noqa: PLC0415 - onnx is heavy, load on use

        imp = import_onnx(self.cfg, section, [self.shapes[i] for i in inputs])
        for cell in imp.cells:
            self.add_cell(cell)
        self.alias.update(getattr(imp, "aliases", {}) or {})
        if imp.outputs:
            self.alias[section.name] = imp.outputs[0]


def _concat(section: Section, inputs: Sequence[str], shapes: Sequence[Shape]) -> Shape:
    """Several inputs are concatenated along channels: their H, W must agree."""
    h, w = shapes[0][1:]
    for name, s in zip(inputs, shapes, strict=True):
        if tuple(s[1:]) != (h, w):
            raise section.error("Input", f"inputs concatenated on channels must have the "
                                f"same size: {inputs[0]} is {w}x{h}, {name} is "
                                f"{s[2]}x{s[1]} (width x height)")
    return (sum(s[0] for s in shapes), h, w)


def build_network(cfg: Config, input_shape: Sequence[int], quantize: bool = True) -> Network:
    """Build the cells of ``cfg`` for a provider of shape (C, H, W); attach quantizers."""
    settings = read_globals(cfg)  # checks the global keys, refuses DefaultModel=Spike*
    check_not_spiking(cfg)
    sections = layer_sections(cfg)
    if not sections:
        raise UserError("no layer: sections with Input= define the network", file=cfg.path)
    builder = _Builder(cfg, tuple(input_shape),  # type: ignore[arg-type]
                       insert_bn=settings.insert_batchnorm_after_conv)
    builder.build(sections)
    cells = {c.name: c for c in builder.cells}
    net = Network(tuple(input_shape), builder.cells,  # type: ignore[arg-type]
                  read_targets(cfg, cells, builder.alias), cfg)
    if quantize:
        _attach_quantizers(net, sections)
    return net


def _attach_quantizers(net: Network, sections: Sequence[Section]) -> None:
    try:
        from n2q.quant import attach_quantizers  # noqa: PLC0415
    except ImportError:
        # n2q.quant not installed in this build: fine unless a section asks for it
        for sec in sections:
            for key in sec.keys():
                if key in ("QWeight", "QAct"):
                    raise sec.error(key, "quantizers are not available in this n2q "
                                    "build (n2q.quant is missing)") from None
        return
    attach_quantizers(net)
    from n2q.quant.protocol import quantizers  # noqa: PLC0415

    for name, q in quantizers(net):  # the lifecycle's first call (n2q.quant.protocol)
        q.bind(net.cells[name], net)
