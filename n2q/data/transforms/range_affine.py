"""RangeAffineTransformation: y = (x op1 v1) op2 v2, in float (the output is float)."""

from __future__ import annotations

import torch

from n2q.data.transforms.base import Transformation, per_channel, register_transformation

OPERATORS = ("Plus", "Minus", "Multiplies", "Divides")


def _apply_(y: torch.Tensor, op: str, v: torch.Tensor) -> torch.Tensor:
    """In place on ``y``, a float copy owned by the transformation (saves two image passes)."""
    if op == "Plus":
        return y.add_(v)
    if op == "Minus":
        return y.sub_(v)
    if op == "Multiplies":
        return y.mul_(v)
    return y.div_(v)


@register_transformation("RangeAffineTransformation")
class RangeAffine(Transformation):
    KEYS = ("FirstOperator", "FirstValue", "SecondOperator", "SecondValue", "Truncate")
    FLOAT_OUTPUT = True

    def configure(self, sec) -> None:
        self.ops = []
        for which in ("First", "Second"):
            op = sec.enum(f"{which}Operator", OPERATORS, "Plus")
            values = sec.floats(f"{which}Value", [0.0])
            if not values:
                raise sec.error(f"{which}Value", "no value: give one, or one per channel")
            if op == "Divides" and any(v == 0.0 for v in values):
                raise sec.error(f"{which}Value", "division by zero")
            self.ops.append((op, values, f"{which}Value"))
        # Truncate: clamp the result to the range of the input data: [0,255] for 8-bit images,
        # [0,1] for float ones (N2D2's float images are in [0,1])
        self.truncate = sec.bool("Truncate", False)

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        channels = x.shape[-3]
        # a fresh float32 copy even when x is already float32: x may be a view of a stored image
        y = x.to(torch.float32, copy=True)
        for op, values, key in self.ops:
            y = _apply_(y, op, per_channel(self.section, key, values, channels))
        if self.truncate:
            y = y.clamp_(0.0, 255.0 if x.dtype == torch.uint8 else 1.0)
        return y
