"""The cell base class, the cell registry and the INI key helpers shared by all cell families.

A cell is one INI layer section (spec/network.md). Every cell class has a plain constructor
with explicit arguments (used by the ONNX importer and by tests) and a ``from_section``
class method that reads and strictly checks its keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from n2q.config import Section
from n2q.errors import did_you_mean, notice
from n2q.shared import Shared

Shape = tuple[int, int, int]  # (C, H, W) of one example

# Type name -> cell class. Filled by @register_cell in each cell-family module.
CELL_TYPES: dict[str, type[Cell]] = {}

# Keys every layer section may carry (spec/network.md "Common keys").
COMMON_KEYS = frozenset({"Input", "Type", "ConfigSection", "Model", "DataType"})
# Key families read by other packages (quantizers, solvers): accepted, not validated here.
FOREIGN_PREFIXES = ("QWeight", "QAct", "Solvers", "WeightsSolver", "BiasSolver",
                    "ScaleSolver")


def register_cell(type_name: str) -> Callable[[type[Cell]], type[Cell]]:
    """Class decorator: make ``Type=<type_name>`` build this cell class."""

    def deco(cls: type[Cell]) -> type[Cell]:
        cls.type = type_name
        CELL_TYPES[type_name] = cls
        return cls

    return deco


class Cell(nn.Module):
    """One layer. ``forward``: op (with the quantized weight) -> activation -> act_quantizer.

    Subclasses implement :meth:`op` and set :attr:`out_shape` in their constructor.
    """

    type: ClassVar[str] = "Cell"
    # Keys of the cell type beyond COMMON_KEYS; prefixes of key families it reads.
    KEYS: ClassVar[frozenset[str]] = frozenset()
    PREFIXES: ClassVar[tuple[str, ...]] = ()
    HAS_ACTIVATION: ClassVar[bool] = False
    MULTI_INPUT: ClassVar[bool] = False  # True: op receives the list of inputs, no concat

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape,
                 activation: nn.Module | None = None) -> None:
        super().__init__()
        self.name = name
        self.inputs = list(inputs)
        self.in_shape: Shape = tuple(int(v) for v in in_shape)  # type: ignore[assignment]
        self.out_shape: Shape = self.in_shape
        self._section = Shared(None)
        self.activation: nn.Module = activation if activation is not None else nn.Identity()
        self.weight_quantizer: nn.Module | None = None
        self.act_quantizer: nn.Module | None = None

    @property
    def section(self) -> Section | None:
        """The INI section the cell was built from (None for programmatic cells)."""
        return self._section.value

    @section.setter
    def section(self, value: Section | None) -> None:
        self._section = Shared(value)

    # -- computation ---------------------------------------------------------------------------
    def op(self, x: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Any) -> torch.Tensor:
        return self.post(self.op(x))

    def post(self, z: torch.Tensor) -> torch.Tensor:
        """What follows the op: activation, then the activation quantizer."""
        y = self.activation(z)
        if self.act_quantizer is not None:
            y = self.act_quantizer(y)
        return y

    def quantized_weight(self) -> torch.Tensor | None:
        """The weight as the forward uses it (None for cells without weights)."""
        return None

    # -- description ---------------------------------------------------------------------------
    def nb_params(self) -> int:
        """Learnable parameters, masked (structurally absent) weights excluded."""
        total = sum(p.numel() for p in self.parameters(recurse=False))
        weight = getattr(self, "weight", None)
        if weight is not None:
            total += self.weight_params(weight.numel()) - weight.numel()
        return total

    def weight_params(self, n: int) -> int:
        """Parameters learned for ``n`` weights: ``n``, or the weight quantizer's own when it
        replaces the float weight (protocol ``replaces_weight``; SLB: R+1 logits a weight)."""
        q = self.weight_quantizer
        if not getattr(q, "replaces_weight", False):
            return n
        per_weight = sum(p.numel() for p in q.parameters()) // max(self.weight.numel(), 1)
        return n * per_weight

    def extra_repr(self) -> str:
        return f"{self.name!r}, in={self.in_shape}, out={self.out_shape}"

    @classmethod
    def from_section(cls, section: Section, name: str, inputs: Sequence[str],
                     in_shape: Shape, input_shapes: Sequence[Shape] | None = None
                     ) -> Cell:
        """Build from an INI section. ``in_shape``: the (concatenated) input shape;
        ``input_shapes``: one shape per input (default: ``[in_shape]``).

        This default serves the shape-preserving cells (NbOutputs, when given, must equal the
        input channels): strict keys, then the constructor with :meth:`section_args`. Cells
        that read NbOutputs or several input shapes override it."""
        cls.check_section_keys(section)
        nb_outputs(section, in_shape[0])
        return cls(name, inputs, in_shape, **cls.section_args(section, in_shape))

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        """The constructor's keyword arguments beyond name, inputs and in_shape, read (and
        checked, errors located at their key) from the section."""
        return {}

    @classmethod
    def check_section_keys(cls, section: Section) -> None:
        """Strict keys: everything this cell type, the activation, the quantizers and the
        solvers read; anything else is refused with a did-you-mean."""
        known = set(COMMON_KEYS) | set(cls.KEYS)
        prefixes = FOREIGN_PREFIXES + cls.PREFIXES
        if cls.HAS_ACTIVATION:
            known.add("ActivationFunction")
            prefixes += ("ActivationFunction.",)
        section.check_keys(known, f"a {cls.type} cell", prefixes)


# -- key helpers (N2D2's spellings) -------------------------------------------------------------
_SPELLINGS = {"Kernel": ("KernelDims", "KernelSize", "KernelWidth", "KernelHeight"),
              "Pool": ("PoolDims", "PoolSize", "PoolWidth", "PoolHeight")}


def dim_keys(stem: str) -> tuple[str, str, str, str]:
    """N2D2's four spellings of a pair: ``<stem>Dims=w h`` | ``<stem>=v`` | X + Y keys."""
    return _SPELLINGS.get(stem, (f"{stem}Dims", stem, f"{stem}X", f"{stem}Y"))


def read_dims(section: Section, stem: str, default: int | None, minimum: int = 1
              ) -> tuple[int, int]:
    """(w, h) in N2D2's order (width first) from any spelling of ``stem``; ``default=None``:
    required. Values below ``minimum`` are refused at the key written."""
    dims_key, one_key, kx, ky = keys = dim_keys(stem)
    if dims_key in section:
        values = section.ints(dims_key)
        if len(values) == 1:
            values = values * 2
        if len(values) != 2:
            raise section.error(dims_key, f"expected 2 values (width height), got "
                                f"{len(values)}")
        w, h = values
    elif one_key in section:
        w = h = section.int(one_key)
    elif default is None and not (kx in section and ky in section):
        raise section.error(None, f"missing key {dims_key}: give {dims_key}=w h, {one_key}=v "
                            f"or {kx}= and {ky}=")
    else:
        w, h = section.int(kx, default), section.int(ky, default)
    if min(w, h) < minimum:
        written = next((k for k in keys if k in section), dims_key)
        raise section.error(written, f"must be >= {minimum}, got {w} {h} (width height)")
    return w, h


def nb_outputs(section: Section, expected: int | None = None) -> int:
    """``NbOutputs``: required for weight cells; for shape-preserving cells it must equal
    the number of input channels (N2D2 requires it; n2q lets it be omitted)."""
    if expected is None:
        n = section.int("NbOutputs")
        if n <= 0:
            raise section.error("NbOutputs", f"must be > 0, got {n}")
        return n
    n = section.int("NbOutputs", expected)
    if n != expected:
        raise section.error("NbOutputs", f"is {n} but the input has {expected} channels: "
                            f"set NbOutputs={expected}")
    return n


def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1
                  ) -> int:
    """N2D2's output size: floor((in + 2p - ext + s) / s), ext = d*(k-1)+1."""
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * padding - extent + stride) // stride


def check_spatial(name: str, in_shape: Shape, out: Sequence[int]) -> None:
    """Constructors raise ValueError; the builder turns it into a located UserError."""
    if min(out) <= 0:
        raise ValueError(f"the output of {name} would be empty (width x height: input "
                         f"{in_shape[2]}x{in_shape[1]}, output {out[1]}x{out[0]}): reduce "
                         "the kernel or the stride, or pad")


def check_sub_options(section: Section, key: str, known: Iterable[str], every: Iterable[str],
                      what: str) -> None:
    """The ``key.*`` options of a named choice (``ActivationFunction.*``, ``WeightsFiller.*``).
    An option no choice knows is an error with a suggestion (LeNet_quant.ini's
    ``ActivationFunction.QuantizationLevels``); an option of another choice, inherited from a
    base block whose choice the cell overrides, is ignored with a notice. ``what`` names the
    choice in the messages ("a Rectifier activation")."""
    known, every = set(known), set(every)
    for sub in section.subkeys(f"{key}."):
        if sub in known:
            continue
        if sub in every:
            file, line = section.line_of(f"{key}.{sub}")
            notice(f"{file}:{line}: [{section.name}] {key}.{sub}: ignored, not an option of "
                   f"{what}")
            continue
        hint = did_you_mean(sub, known or every).replace("(did you mean ",
                                                         f"(did you mean {key}.")
        valid = f"; valid: {', '.join(sorted(known))}" if known else ""
        raise section.error(f"{key}.{sub}", f"unknown option for {what}{hint}{valid}")
