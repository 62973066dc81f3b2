"""Transformation registry: ``Type=`` name -> class (one module per transformation).

Why plain tensor code rather than ``torchvision.transforms.v2`` (its semantics differ from
N2D2's on points that change pixels or draws):

- Rescale / RandomResizeCrop: v2 ``resize`` on uint8 rounds differently from OpenCV's 8-bit
  INTER_LINEAR (see resize.py: 4.6% of MNIST pixels differ by 1) and antialiases by default;
- PadCrop / SliceExtraction: v2 ``center_crop`` splits an odd difference with round-half-even
  (the spec: ceil on the top/left when padding, extra pixel at the bottom/right when
  cropping); v2 ``pad`` has no wrap or mean border and refuses reflect pads wider than the
  image;
- random transformations: v2 draws from the global torch RNG; here each stimulus gets its own
  generator seeded from (run seed, epoch, stimulus id), so draws do not depend on workers;
- ColorSpace / ChannelExtraction: v2 has no HSV/HLS/YCrCb/Lab/Luv conversions with OpenCV's
  8-bit encodings; Normalize: v2 ``normalize`` is (x - mean) / std, not cv::normalize;
- Flip is ``Tensor.flip``, which is what v2's flips call.
Decoding does use ``torchvision.io`` (libjpeg-turbo / libpng), see images.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from n2q.data.transforms.base import TRANSFORMATIONS, Transformation, register_transformation

if TYPE_CHECKING:
    from n2q.config import Section

_MODULES = ("colorspace", "range_affine", "rescale", "padcrop", "slice_extraction",
            "random_resize_crop", "flip", "normalize", "channel_extraction", "distortion")

# keys every transformation section may hold besides its type's own keys
COMMON_KEYS = ("Type", "ApplyTo")


def load_all() -> dict[str, type[Transformation]]:
    for name in _MODULES:
        importlib.import_module(f"n2q.data.transforms.{name}")
    return TRANSFORMATIONS


def make_transformation(sec: Section, extra_keys: tuple[str, ...] = ()) -> Transformation:
    """The transformation of section ``sec`` (strict keys, did-you-mean on unknown ones)."""
    types = load_all()
    kind = sec.enum("Type", sorted(types))
    cls = types[kind]
    sec.check_keys((*COMMON_KEYS, *extra_keys, *cls.KEYS), f"a {kind}")
    return cls(sec)


__all__ = ["COMMON_KEYS", "TRANSFORMATIONS", "Transformation", "load_all",
           "make_transformation", "register_transformation"]
