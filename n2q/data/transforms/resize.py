"""Bilinear resizing as N2D2 does it: OpenCV ``cv::resize(..., INTER_LINEAR)``.

Geometry (both dtypes): destination pixel d samples source coordinate (d + 0.5) * src/dst - 0.5
(pixel centres aligned, no antialiasing), clamped at the borders.

8-bit images: OpenCV does not interpolate in float: the weights are rounded to 11-bit fixed
point (x2048) and the vertical pass of its SIMD path (SSE2/AVX2/NEON, which is what runs on all
but the last few pixels of a row) computes ``((b0*(H0>>4))>>16 + (b1*(H1>>4))>>16 + 2) >> 2``.
``resize_u8`` reproduces that arithmetic, because N2D2's LeNet results depend on 8-bit values
(see the reference run). Measured on the 10000 MNIST digits, 28x28 -> 32x32: float bilinear +
round differs from it by at most 1 grey level on 2.1% of the pixels; torchvision's
``v2.functional.resize(..., antialias=False)`` on uint8 differs by at most 1 on 4.6% of them
(and from float + round on 3.8%: its uint8 path has its own rounding). So torchvision is used
for neither path: ``interpolate`` (float, same geometry) serves float images, this integer code
8-bit ones.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS


@functools.lru_cache(maxsize=64)
def _weights(dst: int, src: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per destination index: left/right source index and their fixed-point weights."""
    scale = src / dst
    f = ((torch.arange(dst, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    s = f.floor()
    f = f - s
    s = s.long()
    low = s < 0
    high = s >= src - 1
    f = torch.where(low | high, torch.zeros_like(f), f)
    s = torch.where(low, torch.zeros_like(s), s)
    s = torch.where(high, torch.full_like(s, src - 1), s)
    # cvRound: round half to even, like torch.round
    w0 = ((1.0 - f) * _COEF_SCALE).round().to(torch.int32)
    w1 = (f * _COEF_SCALE).round().to(torch.int32)
    return s, (s + 1).clamp(max=src - 1), w0, w1


def resize_u8(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 [..., C, H, W] -> uint8 [..., C, height, width], bit-exact OpenCV INTER_LINEAR."""
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x.clone()
    sx0, sx1, a0, a1 = _weights(width, w)
    sy0, sy1, b0, b1 = _weights(height, h)
    # horizontal pass on the transposed image, so that picking source columns is picking rows
    # (a fast gather): [..., C, w, H] -> [..., C, width, H], exact int32 values < 255 * 2049.
    # In-place steps: fewer large temporaries (each costs page faults in a worker process).
    xt = x.transpose(-1, -2).contiguous().to(torch.int32)
    horiz_t = xt[..., sx0, :].mul_(a0[:, None])
    horiz_t.add_(xt[..., sx1, :].mul_(a1[:, None]))
    # OpenCV packs H >> 4 to int16 (never saturates: 255 * 2049 >> 4 < 32767)
    horiz_t.bitwise_right_shift_(4)
    horiz = horiz_t.transpose(-1, -2).contiguous()  # [..., C, H, width]
    out = horiz[..., sy0, :].mul_(b0[:, None]).bitwise_right_shift_(16)
    out.add_(horiz[..., sy1, :].mul_(b1[:, None]).bitwise_right_shift_(16))
    out.add_(2).bitwise_right_shift_(2)
    return out.clamp_(0, 255).to(torch.uint8)


def resize_float(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float [..., C, H, W] -> [..., C, height, width], bilinear, half-pixel centres."""
    if tuple(x.shape[-2:]) == (height, width):
        return x.clone()
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    out = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False,
                        antialias=False)
    return out.reshape(*lead, x.shape[-3], height, width)


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return resize_u8(x, height, width)
    return resize_float(x.float() if not x.is_floating_point() else x, height, width)
