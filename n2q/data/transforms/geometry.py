"""Resampling with OpenCV's border rules and bilinear interpolation.

Borders follow ``cv::borderInterpolate``; they are computed as index maps so that any padding
width works (torch's reflect padding refuses pads wider than the image).
"""

from __future__ import annotations

import torch

BORDERS = ("ConstantBorder", "ReplicateBorder", "ReflectBorder", "WrapBorder",
           "MinusOneReflectBorder", "MeanBorder")


def border_index(p: torch.Tensor, n: int, border: str) -> torch.Tensor:
    """Map integer coordinates ``p`` (any, int64) into [0, n) with an OpenCV border rule.
    Constant-like borders clamp here; the caller masks the outside pixels."""
    if border in ("ReplicateBorder", "ConstantBorder", "MeanBorder") or n == 1:
        return p.clamp(0, n - 1)
    if border == "WrapBorder":
        return p.remainder(n)
    if border == "ReflectBorder":  # fedcba|abcdefgh|hgfedcb
        q = p.remainder(2 * n)
        return torch.where(q >= n, 2 * n - 1 - q, q)
    if border == "MinusOneReflectBorder":  # gfedcb|abcdefgh|gfedcba
        q = p.remainder(2 * n - 2)
        return torch.where(q >= n, 2 * n - 2 - q, q)
    raise ValueError(border)


def fill_value(x: torch.Tensor, border: str, value: torch.Tensor | None) -> torch.Tensor:
    """The [..., C, 1, 1] fill of constant borders: BorderValue, or the image mean."""
    if border == "MeanBorder":
        return x.float().mean(dim=(-2, -1), keepdim=True)
    if value is None:
        return torch.zeros(x.shape[-3], 1, 1)
    return value


def window(x: torch.Tensor, top: int, left: int, height: int, width: int, border: str,
           value: torch.Tensor | None) -> torch.Tensor:
    """x[..., top:top+height, left:left+width] where rows/columns outside the image follow the
    border rule. Inside the image it is a plain slice (a view, no copy)."""
    h, w = x.shape[-2:]
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        return x[..., top:top + height, left:left + width]
    rows = torch.arange(top, top + height)
    cols = torch.arange(left, left + width)
    # advanced indexing: much faster than index_select along the last dimensions
    out = x[..., border_index(rows, h, border)[:, None], border_index(cols, w, border)]
    if border in ("ConstantBorder", "MeanBorder"):
        outside = ((rows < 0) | (rows >= h))[:, None] | ((cols < 0) | (cols >= w))[None, :]
        fill = fill_value(x, border, value).to(torch.float32)
        out = torch.where(outside, fill, out.float())
        if x.dtype == torch.uint8:
            out = out.round().clamp(0, 255).to(torch.uint8)
        elif out.dtype != x.dtype:
            out = out.to(x.dtype)
    return out


def bilinear_sample(x: torch.Tensor, sy: torch.Tensor, sx: torch.Tensor, border: str,
                    value: torch.Tensor | None) -> torch.Tensor:
    """Sample x [C, H, W] at float coordinates sy, sx [H', W'] -> float [C, H', W'].

    Coordinates are pixel centres (0 = centre of the first pixel), neighbours outside the
    image follow the border rule, like cv::remap with INTER_LINEAR."""
    c, h, w = x.shape
    y0 = sy.floor()
    x0 = sx.floor()
    fy = (sy - y0)[None]
    fx = (sx - x0)[None]
    y0 = y0.long()
    x0 = x0.long()
    xf = x.float()
    fill = fill_value(x, border, value).float().view(c, 1)
    flat = xf.reshape(c, h * w)

    def pick(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        iy = border_index(yy, h, border)
        ix = border_index(xx, w, border)
        v = flat[:, (iy * w + ix).reshape(-1)]
        if border in ("ConstantBorder", "MeanBorder"):
            outside = ((yy < 0) | (yy >= h) | (xx < 0) | (xx >= w)).reshape(1, -1)
            v = torch.where(outside, fill, v)
        return v.view(c, *yy.shape)

    top = pick(y0, x0) * (1 - fx) + pick(y0, x0 + 1) * fx
    bottom = pick(y0 + 1, x0) * (1 - fx) + pick(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy
