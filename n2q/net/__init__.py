"""Cells, activations, fillers and the network builder (see ARCHITECTURE.md, net).

Importing this package imports torch: the CLI imports it only after parsing options.
"""

from n2q.net import batchnorm, conv, elemwise, fc, misc, pool  # noqa: F401  (registration)
from n2q.net.activations import ACTIVATIONS, make_activation
from n2q.net.base import CELL_TYPES, Cell, register_cell
from n2q.net.batchnorm import BatchNormCell
from n2q.net.conv import ConvCell
from n2q.net.elemwise import ElemWiseCell
from n2q.net.fc import FcCell
from n2q.net.fillers import FILLERS, make_filler
from n2q.net.graph import Network, Target, build_network
from n2q.net.misc import (
    ActivationCell,
    DropoutCell,
    PaddingCell,
    ReshapeCell,
    ResizeCell,
    ScalingCell,
    SoftmaxCell,
    TransposeCell,
)
from n2q.net.pool import PoolCell

__all__ = [
    "ACTIVATIONS", "CELL_TYPES", "FILLERS", "ActivationCell", "BatchNormCell", "Cell",
    "ConvCell", "DropoutCell", "ElemWiseCell", "FcCell", "Network", "PaddingCell", "PoolCell",
    "ReshapeCell", "ResizeCell", "ScalingCell", "SoftmaxCell", "Target", "TransposeCell",
    "build_network", "make_activation", "make_filler", "register_cell",
]
