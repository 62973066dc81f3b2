"""Quantization-aware training: quantizer registry, methods (one module each), attachment.

Importing this package registers every method (SAT, LSQ, ...) so that the registries list them.
Fusion (``n2q.quant.fuse``) is imported on its own by ``-qat-sat``.
"""

import n2q.quant.simqat  # noqa: F401  (registers SimQAT)
from n2q.quant import lsq, sat  # noqa: F401  (registers the methods; add new ones here)

# isort: split
from n2q.quant import slb  # noqa: F401  (QWeight=SLB)
from n2q.quant.attach import attach_quantizers, build_act_quantizer, build_weight_quantizer
from n2q.quant.registry import (
    ACT_QUANTIZERS,
    WEIGHT_QUANTIZERS,
    ActQuantizer,
    Quantizer,
    WeightQuantizer,
    apply_weight_op,
    register_act,
    register_weight,
)

__all__ = [
    "ACT_QUANTIZERS",
    "WEIGHT_QUANTIZERS",
    "ActQuantizer",
    "Quantizer",
    "WeightQuantizer",
    "apply_weight_op",
    "attach_quantizers",
    "build_act_quantizer",
    "build_weight_quantizer",
    "register_act",
    "register_weight",
]
