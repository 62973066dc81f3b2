"""SLB (Searching for Low-Bit weights, Yang et al. 2020; MindSpore Golden Stick, seeds 000/002).

Instead of rounding float weights, every weight of a Conv (or Fc) cell chooses among the R+1
candidate values v (R = 1, 3, 15: 1, 2, 4 bits) through learned logits A [*weight shape, R+1]
(spec/quant.md, "SLB"):
- training, before the end flag: W = sum_i softmax(T*A)_i * v_i (a relaxation whose gradient
  reaches A: dW/dA_i = T * P_i * (v_i - W));
- inference, and training once the end flag is set: W = v[argmax A] (one-hot, no gradient).
The temperature T grows by TFactor per epoch between t_start = int(E*TStartTime) and
t_end = int(E*TEndTime), sharpening the softmax towards the one-hot choice. The cell's float
weight is not used: the quantizer says so with ``replaces_weight`` and the solver learns the
logits in the cell's weights group (WeightsSolver keys, weight decay included, as Golden Stick
decays them), the summary counts them instead of the float weights.

Golden Stick leaves BatchNorm on batch statistics after its calibration pass; n2q follows the
spec: the pass (``wants_calibration``) only refreshes the running statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from n2q.errors import UserError, notice
from n2q.quant.protocol import IntegerGrid, QuantizedWeight, RunPlan
from n2q.quant.registry import QuantizerSettings, WeightQuantizer, register_weight

RANGES = (1, 3, 15)      # 1, 2, 4 bits: the weight widths Golden Stick's SLB searches
_CHUNK = 1 << 16         # weights per chunk of the softmax: [chunk, R+1] stays in the cache


@dataclass(frozen=True)
class SLBSettings(QuantizerSettings):
    """The ``QWeight.*`` keys of ``QWeight=SLB`` (defaults: Golden Stick's; Range 1 is its
    default INT1). No Solver, QuantMode or Mode key: the logits learn with the cell's weights
    solver and the weights are always the one-hot candidates."""

    PREFIX = "QWeight"
    NAME = "SLB"
    KEYS = ("Range", "TStartVal", "TStartTime", "TEndTime", "TFactor", "BNCalibration")

    range: int = 1
    t_start_val: float = 1.0
    t_start_time: float = 0.2
    t_end_time: float = 0.6
    t_factor: float = 1.2
    bn_calibration: bool = False

    def validate(self) -> None:
        super().validate()
        self.check(self.range in RANGES, "QWeight.Range", "SLB searches 1, 2 or 4-bit "
                   f"weights: Range must be 1, 3 or 15, got {self.range}")
        self.check(math.isfinite(self.t_start_val) and self.t_start_val > 0,
                   "QWeight.TStartVal", f"the initial temperature must be > 0, got "
                   f"{self.t_start_val}")
        self.check(self.t_start_time >= 0, "QWeight.TStartTime",
                   f"must be >= 0 (a fraction of the run's epochs), got {self.t_start_time}")
        self.check(self.t_end_time >= self.t_start_time, "QWeight.TEndTime",
                   f"TEndTime ({self.t_end_time}) must be >= TStartTime "
                   f"({self.t_start_time}): the temperature stops growing at the end")
        self.check(math.isfinite(self.t_factor) and self.t_factor > 0, "QWeight.TFactor",
                   f"the temperature factor must be > 0, got {self.t_factor}")

    @classmethod
    def from_section(cls, sec: Any) -> SLBSettings:
        return cls.located(
            sec,
            range=sec.int("QWeight.Range", 1),
            t_start_val=sec.float("QWeight.TStartVal", 1.0),
            t_start_time=sec.float("QWeight.TStartTime", 0.2),
            t_end_time=sec.float("QWeight.TEndTime", 0.6),
            t_factor=sec.float("QWeight.TFactor", 1.2),
            bn_calibration=bool(sec.bool("QWeight.BNCalibration", False)))

    def epochs(self, total_epochs: int) -> tuple[int, int]:
        """(t_start, t_end) for a run of ``total_epochs`` epochs."""
        return int(total_epochs * self.t_start_time), int(total_epochs * self.t_end_time)

    def temperature(self, total_epochs: int, epoch: int) -> tuple[float, bool]:
        """(T, end flag due) at the beginning of 1-based ``epoch`` of a run of E epochs:
        T = TStartVal * TFactor^(min(e, t_end) - t_start) if e > t_start else TStartVal;
        the end flag is due when e >= t_end."""
        t_start, t_end = self.epochs(total_epochs)
        t = self.t_start_val
        if epoch > t_start:
            t = self.t_start_val * self.t_factor ** (min(epoch, t_end) - t_start)
        return t, epoch >= t_end


def candidates(range_: int) -> torch.Tensor:
    """The R+1 candidate values: {-1, +1} for R = 1, else linspace(-1, 1, R+1), i.e.
    (2k - R)/R, computed in float64 so that each float32 value is the nearest to its grid
    point (the integer grid's dequantization gives the same floats)."""
    k = torch.arange(range_ + 1, dtype=torch.float64)
    return ((2 * k - range_) / range_).float()


def he_normal_std(logits_shape: tuple[int, ...]) -> float:
    """He-normal std sqrt(2/fan_out) with Golden Stick's fan_out of the logits tensor:
    shape[0] * prod(shape[2:]) (Conv: O*kH*kW*(R+1), the candidate axis counts; Fc: O*(R+1))."""
    fan_out = logits_shape[0] * math.prod(logits_shape[2:])
    return math.sqrt(2.0 / fan_out)


class _SoftWeight(torch.autograd.Function):
    """A [N, K], v [K], T -> W [N] = softmax(T*A) @ v, chunk by chunk (a [chunk, K] block
    stays in the cache: 3-4x faster than one softmax over the whole tensor). The backward
    recomputes P per chunk instead of saving it (no second logits-sized tensor):
    dL/dA = T * P * (v - W) * dL/dW.

    The gradient goes into the memory of the previous step's gradient when the solver has
    released it (``logits.grad`` is None): a fresh logits-sized tensor each step costs ~0.3 s
    of page faults on ResNet-18 W4 (11M x 16 logits). ``owner`` keeps that memory as a view,
    so the tensor returned to autograd is still its own (autograd makes it ``.grad`` as is).
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, values: torch.Tensor, t: float,
                owner: SLBWeight) -> torch.Tensor:
        w = logits.new_empty(logits.shape[0])
        for start in range(0, logits.shape[0], _CHUNK):
            p = torch.softmax(logits[start:start + _CHUNK] * t, dim=-1)
            torch.mv(p, values, out=w[start:start + _CHUNK])
        ctx.save_for_backward(logits, values, w)
        ctx.t, ctx.owner = t, owner
        return w

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        logits, values, w = ctx.saved_tensors
        t = ctx.t
        out = ctx.owner.gradient_memory(logits)
        for start in range(0, logits.shape[0], _CHUNK):
            stop = start + _CHUNK
            p = torch.softmax(logits[start:stop] * t, dim=-1)
            d = torch.sub(values, w[start:stop, None], out=out[start:stop])  # v - W  [n, K]
            d.mul_(p).mul_(grad[start:stop, None] * t)
        return out, None, None, None


@register_weight("SLB")
class SLBWeight(WeightQuantizer):
    """``QWeight=SLB``: weights chosen among R+1 candidates by learned logits.

    Parameter ``logits`` [*weight shape, R+1]; buffers ``temperature`` (0-dim) and ``end``
    (0-dim bool, the one-hot switch), set by :meth:`start_epoch` and saved in state dicts.
    Built from a cell section, the logits take the cell's weight shape; built in Python
    without ``weight_shape``, they are created at the first forward (build the optimizer
    after it).
    """

    SETTINGS = SLBSettings
    # tests/test_quant_registry.py learns one epoch: t_end = int(1 * 2) = 2 keeps it relaxed
    TEST_KEYS = {"TStartTime": "0", "TEndTime": "2"}
    replaces_weight = True   # protocol: the cell's float weight is neither used nor learned

    def __init__(self, settings: SLBSettings | None = None, *,
                 weight_shape: tuple[int, ...] | None = None,
                 file_order: torch.Tensor | None = None, cell_type: str = "Conv",
                 **fields: Any) -> None:
        super().__init__(settings, **fields)
        settings = self.settings
        self.cell_type = cell_type
        self.register_buffer("values", candidates(settings.range), persistent=False)
        self.register_buffer("temperature", torch.tensor(float(settings.t_start_val)))
        self.register_buffer("end", torch.tensor(False))
        # flat weight indices in the order of <cell>_weights.syntxt (None: natural order)
        self.register_buffer("file_order", file_order, persistent=False)
        self.logits: nn.Parameter | None = None
        if weight_shape is not None:
            self._create_logits(tuple(weight_shape))
        self.total_epochs: int | None = None
        self.announce = True       # bind(): only the first cell of a schedule prints it
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None
        self._grad_memory: torch.Tensor | None = None

    def _create_logits(self, weight_shape: tuple[int, ...]) -> None:
        shape = (*weight_shape, self.range + 1)
        self.logits = nn.Parameter(torch.randn(shape) * he_normal_std(shape))

    # -- INI ----------------------------------------------------------------------------------
    @classmethod
    def from_section(cls, sec: Any, cell: Any = None) -> SLBWeight:
        """The settings of the section, the logits shaped like the cell's weight."""
        solver_keys = [k for k in ("QWeightSolver",) if k in sec] + [
            "QWeightSolver." + k for k in sec.subkeys("QWeightSolver.")]
        if solver_keys:
            raise sec.error(solver_keys[0], "SLB learns its logits with the cell's weights "
                            "solver: set WeightsSolver.* (or Solvers.*) instead of this key")
        q = super().from_section(sec, cell)
        weight = getattr(cell, "weight", None)
        if weight is not None:
            q.cell_type = cell.type
            q._create_logits(tuple(weight.shape))
            q.file_order = weights_file_order(cell)
        return q

    # -- forward ------------------------------------------------------------------------------
    @property
    def one_hot(self) -> bool:
        """True when the forward gives the argmax candidates (inference, or past t_end)."""
        return not self.training or bool(self.end)

    def quantize(self, w: torch.Tensor) -> QuantizedWeight:
        """The weights the op uses, shaped like ``w`` (whose values are not used)."""
        if self.logits is None:
            self._create_logits(tuple(w.shape))
            self.logits.data = self.logits.data.to(w.device)
        elif self.logits.shape[:-1] != w.shape and self.logits[..., 0].numel() == w.numel():
            # logits loaded from a file before the first forward: [N, K] -> [*w shape, K]
            self.logits = nn.Parameter(self.logits.data.reshape(*w.shape, -1))
        if self.logits.shape[:-1] != w.shape:
            raise ValueError(f"SLB logits {tuple(self.logits.shape)} do not match the weight "
                             f"{tuple(w.shape)}")
        if self.one_hot:
            return QuantizedWeight(self.one_hot_weight())
        k = self.logits.shape[-1]
        t = float(self.temperature)
        flat = _SoftWeight.apply(self.logits.reshape(-1, k), self.values.to(self.logits), t,
                                 self)
        return QuantizedWeight(flat.reshape(w.shape))

    def __getstate__(self) -> dict[str, Any]:
        """Copies (deepcopy, pickling) leave out the caches: the gradient memory is as large
        as the logits."""
        state = dict(self.__dict__)
        state["_grad_memory"] = state["_cache"] = None
        return state

    def gradient_memory(self, like: torch.Tensor) -> torch.Tensor:
        """A tensor shaped like ``like`` ([N, K] logits) for the backward to fill: the memory
        of the last gradient when nothing holds it as ``logits.grad`` any more (the solver
        sets it to None after its update; with IterationSize > 1 the gradient is still
        accumulating there, so it gets new memory)."""
        if self.logits.grad is not None:
            return torch.empty_like(like)        # accumulated into .grad, then freed
        kept = self._grad_memory
        if (kept is None or kept.numel() != like.numel() or kept.dtype != like.dtype
                or kept.device != like.device):
            out = torch.empty_like(like)
            self._grad_memory = out.view(-1)     # a view: `out` stays a tensor of its own
            return out
        return kept.view(like.shape)

    def one_hot_weight(self) -> torch.Tensor:
        """v[argmax A] [*weight shape], no gradient; cached while the logits are unchanged
        (past t_end the solver leaves them alone, so the argmax runs once per load/step)."""
        a = self.logits
        key = (a._version, a.data_ptr())
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self.values.to(a)[a.argmax(dim=-1)])
        return self._cache[1]

    def stored_weight(self, w: torch.Tensor) -> torch.Tensor:
        """What ``<cell>_weights.syntxt`` holds: the one-hot weights (a float network can
        load a SLB folder)."""
        return self.one_hot_weight().detach().clone()

    def integer_grid(self, w: torch.Tensor | None = None) -> IntegerGrid:
        """One-hot weights v_k = (2k - R)/R: integers 2k - R in [-R, R] step 2, scale 1/R."""
        r = self.range
        return IntegerGrid(qmin=-r, qmax=r, scale=torch.tensor(1.0 / r, dtype=torch.float64),
                           stride=2)

    # -- lifecycle ----------------------------------------------------------------------------
    def bind(self, cell: Any, net: Any) -> None:
        """The first SLB cell of each schedule (settings) announces it on the console."""
        earlier = []
        for other in net.cells.values():
            q = getattr(other, "weight_quantizer", None)
            if q is self:
                break
            if isinstance(q, SLBWeight):
                earlier.append(q.settings)
        self.announce = self.settings not in earlier
        self._cells = sum(isinstance(getattr(c, "weight_quantizer", None), SLBWeight)
                          and c.weight_quantizer.settings == self.settings
                          for c in net.cells.values())

    def plan(self, plan: RunPlan) -> None:
        self.total_epochs = int(plan.total_epochs)

    def start_epoch(self, epoch: int) -> None:
        if self.total_epochs is None:
            raise RuntimeError("SLBWeight.start_epoch before plan(): the schedule needs E")
        t, end_due = self.settings.temperature(self.total_epochs, epoch)
        became_one_hot = end_due and not bool(self.end)
        self.temperature.fill_(t)
        if end_due:
            self.end.fill_(True)
        if self.announce:
            self._announce(epoch, t, became_one_hot)

    def _announce(self, epoch: int, t: float, became_one_hot: bool) -> None:
        cells = getattr(self, "_cells", 1)
        what = f"{cells} cells" if cells != 1 else "1 cell"
        if became_one_hot:
            notice(f"SLB epoch {epoch}/{self.total_epochs} ({what}): the weights are one-hot "
                   f"from now on (t_end = {self.settings.epochs(self.total_epochs)[1]}); "
                   "their logits stop learning")
        elif not bool(self.end):
            notice(f"SLB epoch {epoch}/{self.total_epochs} ({what}): temperature {t:.6g}")

    def wants_calibration(self, epoch: int) -> bool:
        """BNCalibration=1: a BatchNorm pass after every epoch e > t_start."""
        if not self.settings.bn_calibration or self.total_epochs is None:
            return False
        return epoch > self.settings.epochs(self.total_epochs)[0]

    # -- weights folders ----------------------------------------------------------------------
    def files(self, cell_name: str) -> dict[str, torch.Tensor]:
        """``<cell>_SLB_logits.syntxt``: one line of R+1 logits per weight, in the order of
        ``<cell>_weights.syntxt``."""
        if self.logits is None:
            return {}
        rows = self.logits.detach().reshape(-1, self.logits.shape[-1])
        if self.file_order is not None:
            rows = rows[self.file_order]
        return {f"{cell_name}_SLB_logits.syntxt": rows.clone()}

    def load_file(self, name: str, tensor: torch.Tensor) -> None:
        if not name.endswith("_SLB_logits.syntxt"):
            super().load_file(name, tensor)
        k = self.range + 1
        if self.logits is None:    # Python use without weight shape: [N, K] until a forward
            values = torch.as_tensor(tensor).reshape(-1)
            if values.numel() % k:
                raise UserError(f"expected lines of {k} logits (Range={self.range}), got "
                                f"{values.numel()} values")
            self.logits = nn.Parameter(values.reshape(-1, k).to(torch.float32).clone())
            return
        n = self.logits.numel() // k if self.file_order is None else len(self.file_order)
        values = torch.as_tensor(tensor)
        if values.numel() != n * k:
            raise UserError(f"expected {n} lines of {k} logits (one per weight, Range="
                            f"{self.range}), got {values.numel()} values")
        rows = values.reshape(n, k).to(self.logits)
        with torch.no_grad():
            flat = self.logits.view(-1, k)
            if self.file_order is None:
                flat.copy_(rows)
            else:
                flat[self.file_order] = rows

    def extra_repr(self) -> str:
        s = self.settings
        return (f"{super().extra_repr()}, t_start_val={s.t_start_val}, t_start_time="
                f"{s.t_start_time}, t_end_time={s.t_end_time}, t_factor={s.t_factor}, "
                f"bn_calibration={int(s.bn_calibration)}")

    def describe(self) -> str:
        label = f"SLB R={self.range}"
        return label + " (on Fc: n2q extension)" if self.cell_type == "Fc" else label


def weights_file_order(cell: Any) -> torch.Tensor | None:
    """Flat indices of ``cell.weight`` in the order ``<cell>_weights.syntxt`` writes them
    (only connected weights of a masked / grouped Conv), or None for the natural order."""
    import numpy as np  # noqa: PLC0415

    from n2q.io.weights import conv_layout  # noqa: PLC0415

    weight = cell.weight
    index = np.arange(weight.numel()).reshape(tuple(weight.shape))
    fmt = getattr(cell, "weights_export_format", None)
    if cell.type == "Fc":
        order = index.reshape(weight.shape[0], -1).T if fmt == "CO" else index
        order = order.reshape(-1)
    else:
        layout = conv_layout(cell)
        full = layout.to_full(index)            # [O, C, K], unconnected channels unused
        if fmt == "HWCO":
            order = full.transpose(2, 1, 0)[:, layout.connected.T].reshape(-1)
        else:
            order = full[layout.connected].reshape(-1)
    if order.size == weight.numel() and (order == np.arange(order.size)).all():
        return None
    return torch.from_numpy(np.ascontiguousarray(order))
