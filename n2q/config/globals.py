"""Keys of the global section (before the first header): spec/ini.md, Sections.

``DefaultModel`` names N2D2's simulation back-end (``Frame``, ``Frame_CUDA``, ``Transcode``...):
n2q maps ``*_CUDA`` to "use the GPU when there is one", the rest to the CPU, and never fails on
it, except for spiking models, which n2q does not simulate. ``CheckWeightRange`` is read (a
boolean, checked) but changes nothing: N2D2 applies it to the static synapses of its spiking
simulation (``Synapse_Static``), never to frame-based cells.
"""

from __future__ import annotations

from dataclasses import dataclass

from n2q.config.model import Config

# DefaultDataType -> torch dtype name (``getattr(torch, dtype)``)
DATA_TYPES = {"Float32": "float32", "Float16": "float16", "Float64": "float64"}
GLOBAL_KEYS = ("DefaultModel", "DefaultDataType", "InsertBatchNormAfterConv", "CheckWeightRange")
# Spike, Spike_Analog, Spike_PCM, Spike_RRAM, Spike_CUDA...: event-driven simulation
_SPIKING_PREFIX = "spike"


@dataclass(frozen=True)
class GlobalSettings:
    default_model: str = "Frame"
    use_gpu: bool = False  # True for *_CUDA models: use the GPU when there is one
    dtype: str = "float32"  # torch dtype name
    insert_batchnorm_after_conv: bool = False
    check_weight_range: bool = True  # N2D2: spiking synapses only; no effect in n2q


def read_globals(cfg: Config) -> GlobalSettings:
    """Read and check the global keys (unknown ones are refused, with a suggestion)."""
    sec = cfg.globals
    sec.check_keys(GLOBAL_KEYS, "the global section")
    model = sec.str("DefaultModel", "Frame").strip()
    if model.lower().startswith(_SPIKING_PREFIX):
        raise sec.error("DefaultModel", f"spiking models are not supported ({model}): n2q "
                                        "trains frame-based networks; use DefaultModel=Frame "
                                        "or Frame_CUDA")
    dtype = sec.enum("DefaultDataType", list(DATA_TYPES), "Float32")
    return GlobalSettings(
        default_model=model,
        use_gpu=model.upper().endswith("_CUDA"),
        dtype=DATA_TYPES[dtype],
        insert_batchnorm_after_conv=sec.bool("InsertBatchNormAfterConv", False),
        check_weight_range=sec.bool("CheckWeightRange", True),
    )
