"""Integer fusion (fusion.md): ``-test -qat-fuse`` (N2D2's ``-qat-sat``) turns a network trained
with quantizers into an integer-only network, reading only the quantizers' integer grids.

``plan`` decides the fused graph from the structure and the grids, ``build`` computes the integer
layers (``layers``) from the trained parameters, ``network`` runs them, ``check`` compares them
with the fake-quant network, ``io`` writes and reloads ``weights_quantized/``.
"""

from n2q.quant.fusion.build import fuse_network, weight_integers
from n2q.quant.fusion.check import FusionCheck
from n2q.quant.fusion.io import load_fused, save_fused
from n2q.quant.fusion.network import FusedNetwork
from n2q.quant.fusion.plan import Domain, Step, StepKind, plan_fusion

__all__ = ["Domain", "FusedNetwork", "FusionCheck", "Step", "StepKind", "fuse_network",
           "load_fused", "plan_fusion", "save_fused", "weight_integers"]
