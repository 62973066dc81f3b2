"""``-test -qat-fuse`` / ``-qat-sat``: the integer fusion of n2q.quant.fusion under the names
the run and older callers use (``fuse_sat`` is N2D2's name; it fuses any quantizers that give
integer grids, SAT's and LSQ's alike)."""

from n2q.quant.fusion import (
    Domain,
    FusedNetwork,
    FusionCheck,
    Step,
    StepKind,
    fuse_network,
    load_fused,
    plan_fusion,
    save_fused,
)

fuse_sat = fuse_network

__all__ = ["Domain", "FusedNetwork", "FusionCheck", "Step", "StepKind", "fuse_network",
           "fuse_sat", "load_fused", "plan_fusion", "save_fused"]
