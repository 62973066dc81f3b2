"""Build the quantizers named in cell sections and hang them on the network's cells."""

from __future__ import annotations

from typing import Any

from n2q.errors import did_you_mean
from n2q.quant.registry import (
    ACT_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    ActQuantizer,
    WeightQuantizer,
)

# Cells whose weights a QWeight quantizes (the layer compatibility table of seed 004)
WEIGHT_CELL_TYPES = ("Conv", "Fc")


def _lookup(sec: Any, key: str, registry: dict[str, type]) -> type:
    name = sec.str(key)
    if name not in registry:
        raise sec.error(key, f"unknown quantizer '{name}'{did_you_mean(name, registry)}"
                        f"; registered: {', '.join(sorted(registry))}")
    return registry[name]


def _orphan_subkeys(sec: Any, family: str) -> None:
    """``QWeight.Range=15`` without ``QWeight=``: nothing would read it, say so."""
    if family not in sec:
        subs = sec.subkeys(family + ".")
        if subs:
            raise sec.error(f"{family}.{subs[0]}", f"{family}.{subs[0]} is set but {family} is "
                            f"not: add {family}=SAT (or LSQ) or remove the {family}.* keys")


def build_weight_quantizer(sec: Any, cell: Any = None) -> WeightQuantizer | None:
    """The ``QWeight`` quantizer of a section (None if the section has no ``QWeight``)."""
    _orphan_subkeys(sec, "QWeight")
    if "QWeight" not in sec:
        return None
    cell_type = getattr(cell, "type", None)
    if cell is not None and cell_type not in WEIGHT_CELL_TYPES:
        raise sec.error("QWeight", f"QWeight quantizes the weights of Conv and Fc cells; this "
                        f"is a {cell_type} cell: remove QWeight here (use QAct to quantize its "
                        "output)")
    return _lookup(sec, "QWeight", WEIGHT_QUANTIZERS).from_section(sec, cell)


def build_act_quantizer(sec: Any, cell: Any = None) -> ActQuantizer | None:
    """The ``QAct`` quantizer of a section (None if the section has no ``QAct``)."""
    _orphan_subkeys(sec, "QAct")
    if "QAct" not in sec:
        return None
    if cell is not None and getattr(cell, "out_shape", True) is None:
        raise sec.error("QAct", f"a {getattr(cell, 'type', '?')} cell has no output to "
                        "quantize: remove QAct here")
    return _lookup(sec, "QAct", ACT_QUANTIZERS).from_section(sec, cell)


def _check_integer_support(sec: Any, cell: Any, wq: WeightQuantizer) -> None:
    """Mode=Integer needs a cell whose op rescales its output by ``QuantizedWeight.scale``
    (through :func:`n2q.quant.apply_weight_op`); cells declare it with ``INTEGER_WEIGHTS = True``.
    Refuse rather than silently run integer weights without the rescale."""
    if wq.integer and not getattr(cell, "INTEGER_WEIGHTS", False):
        raise sec.error("QWeight.Mode", f"Mode=Integer is not available for {cell.type} cells "
                        "in this n2q build (the cell does not rescale integer weights); use "
                        "QWeight.Mode=Default (fake quantization, same predictions)")


def attach_quantizers(net: Any) -> None:
    """For every cell of ``net.cells`` whose section has ``QWeight`` / ``QAct``, build the
    quantizer and set ``cell.weight_quantizer`` / ``cell.act_quantizer``.

    The ``QAct`` keys are read from ``cell.act_section`` when the cell has one (an ONNX Relu
    override section such as ``[resnetv15_relu0_fwd]ReluQ_def`` that lands on the cell before
    the Relu), else from ``cell.section``. Cells without a section are left alone.
    """
    for cell in net.cells.values():
        sec = getattr(cell, "section", None)
        if sec is not None:
            wq = build_weight_quantizer(sec, cell)
            if wq is not None:
                _check_integer_support(sec, cell, wq)
                cell.weight_quantizer = wq
        act_sec = getattr(cell, "act_section", None) or sec
        if act_sec is not None:
            aq = build_act_quantizer(act_sec, cell)
            if aq is not None:
                cell.act_quantizer = aq
