"""ColorSpaceTransformation: OpenCV's colour conversions (cv::cvtColor) on BGR-decoded images.

A plain target name (``RGB``, ``HSV``...) converts from BGR, the order images decode to;
``X_to_Y`` names the source explicitly. 8-bit images use OpenCV's 8-bit encodings (H/2 in
[0,180), L*255/100, a+128...) and stay 8-bit; float images use the float ones (H in degrees,
L in [0,100]...). Lab and Luv apply the sRGB gamma and the D65 white point, as OpenCV does.
A one-channel image is taken as grey (B = G = R); a 4th (alpha) channel is dropped.
"""

from __future__ import annotations

import torch

from n2q.data.transforms.base import Transformation, register_transformation

SPACES = ("BGR", "RGB", "HSV", "HLS", "YCrCb", "CIELab", "CIELuv")
CONVERSIONS = {
    **{name: ("BGR", name) for name in SPACES},
    "RGB_to_BGR": ("RGB", "BGR"),
    **{f"RGB_to_{t}": ("RGB", t) for t in ("HSV", "HLS", "YCrCb", "CIELab", "CIELuv")},
    **{f"{s}_to_{t}": (s, t) for s in ("HSV", "HLS", "YCrCb", "CIELab", "CIELuv")
       for t in ("BGR", "RGB")},
}

_RGB2XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_XYZ2RGB = torch.linalg.inv(_RGB2XYZ)
_WHITE = (0.950456, 1.0, 1.088754)
_UN, _VN = 0.19793943, 0.46831096
# 8-bit encodings: (scale, offset) per channel: stored = value * scale + offset
_U8_CODE = {
    "HSV": ((0.5, 255.0, 255.0), (0.0, 0.0, 0.0)),
    "HLS": ((0.5, 255.0, 255.0), (0.0, 0.0, 0.0)),
    # OpenCV's 8-bit chroma offset is 128, not 0.5 * 255
    "YCrCb": ((255.0, 255.0, 255.0), (0.0, 0.5, 0.5)),
    "CIELab": ((255.0 / 100.0, 1.0, 1.0), (0.0, 128.0, 128.0)),
    "CIELuv": ((255.0 / 100.0, 255.0 / 354.0, 255.0 / 262.0), (0.0, 134.0 * 255.0 / 354.0,
                                                                 140.0 * 255.0 / 262.0)),
}


def _gamma_decode(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


def _gamma_encode(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c > 0.0031308, 1.055 * c.clamp(min=0) ** (1 / 2.4) - 0.055, 12.92 * c)


def _hue(r, g, b, mx, diff):
    safe = torch.where(diff > 0, diff, torch.ones_like(diff))
    h = torch.where(mx == r, (g - b) / safe, torch.where(mx == g, 2 + (b - r) / safe,
                                                          4 + (r - g) / safe)) * 60.0
    h = torch.where(diff > 0, h, torch.zeros_like(h))
    return torch.where(h < 0, h + 360.0, h)


def _from_hue(h, c, m):
    """RGB from hue (degrees), chroma and the minimum component."""
    hp = (h % 360.0) / 60.0
    x = c * (1 - (hp % 2 - 1).abs())
    zero = torch.zeros_like(c)
    sector = hp.floor().clamp(0, 5)
    table = [(c, x, zero), (x, c, zero), (zero, c, x), (zero, x, c), (x, zero, c), (c, zero, x)]
    r, g, b = zero.clone(), zero.clone(), zero.clone()
    for k, (rr, gg, bb) in enumerate(table):
        sel = sector == k
        r, g, b = torch.where(sel, rr, r), torch.where(sel, gg, g), torch.where(sel, bb, b)
    return r + m, g + m, b + m


def _f_lab(t):
    return torch.where(t > 0.008856, t.clamp(min=0) ** (1 / 3), 7.787 * t + 16 / 116)


def _xyz(r, g, b):
    rgb = torch.stack([_gamma_decode(r), _gamma_decode(g), _gamma_decode(b)], -1)
    xyz = rgb @ _RGB2XYZ.T
    return xyz[..., 0], xyz[..., 1], xyz[..., 2]


def _from_xyz(x, y, z):
    rgb = torch.stack([x, y, z], -1) @ _XYZ2RGB.T
    return tuple(_gamma_encode(rgb[..., i]) for i in range(3))


def _lightness(y):
    return torch.where(y > 0.008856, 116 * y.clamp(min=0) ** (1 / 3) - 16, 903.3 * y)


def _y_of_lightness(L):
    return torch.where(L > 8.0, ((L + 16) / 116) ** 3, L / 903.3)


def encode(space: str, r, g, b):
    """Unit RGB (float64, [0,1]) -> the three channels of ``space`` (float conventions)."""
    if space == "BGR":
        return b, g, r
    if space == "RGB":
        return r, g, b
    mx = torch.maximum(torch.maximum(r, g), b)
    mn = torch.minimum(torch.minimum(r, g), b)
    diff = mx - mn
    if space == "HSV":
        s = torch.where(mx > 0, diff / torch.where(mx > 0, mx, torch.ones_like(mx)), 0 * mx)
        return _hue(r, g, b, mx, diff), s, mx
    if space == "HLS":
        light = (mx + mn) / 2
        den = torch.where(light < 0.5, mx + mn, 2 - mx - mn)
        s = torch.where(diff > 0, diff / torch.where(den > 0, den, torch.ones_like(den)), 0 * mx)
        return _hue(r, g, b, mx, diff), light, s
    if space == "YCrCb":
        y = 0.299 * r + 0.587 * g + 0.114 * b
        return y, (r - y) * 0.713 + 0.5, (b - y) * 0.564 + 0.5
    x, y, z = _xyz(r, g, b)
    L = _lightness(y)
    if space == "CIELab":
        fx, fy, fz = _f_lab(x / _WHITE[0]), _f_lab(y), _f_lab(z / _WHITE[2])
        return L, 500 * (fx - fy), 200 * (fy - fz)
    den = x + 15 * y + 3 * z
    den = torch.where(den > 0, den, torch.ones_like(den))
    return L, 13 * L * (4 * x / den - _UN), 13 * L * (9 * y / den - _VN)


def decode(space: str, c0, c1, c2):
    """The three channels of ``space`` (float conventions) -> unit RGB."""
    if space == "BGR":
        return c2, c1, c0
    if space == "RGB":
        return c0, c1, c2
    if space == "HSV":
        chroma = c2 * c1
        return _from_hue(c0, chroma, c2 - chroma)
    if space == "HLS":
        chroma = (1 - (2 * c1 - 1).abs()) * c2
        return _from_hue(c0, chroma, c1 - chroma / 2)
    if space == "YCrCb":
        cr, cb = c1 - 0.5, c2 - 0.5
        return c0 + 1.403 * cr, c0 - 0.714 * cr - 0.344 * cb, c0 + 1.773 * cb
    y = _y_of_lightness(c0)
    if space == "CIELab":
        fy = torch.where(y > 0.008856, y.clamp(min=0) ** (1 / 3), 7.787 * y + 16 / 116)
        fx, fz = fy + c1 / 500, fy - c2 / 200

        def inv(f):
            return torch.where(f > 0.206893, f ** 3, (f - 16 / 116) / 7.787)

        return _from_xyz(inv(fx) * _WHITE[0], y, inv(fz) * _WHITE[2])
    L13 = torch.where(c0 > 0, 13 * c0, torch.ones_like(c0))
    up, vp = c1 / L13 + _UN, c2 / L13 + _VN
    vp = torch.where(vp != 0, vp, torch.full_like(vp, 1e-12))
    x = y * 9 * up / (4 * vp)
    z = y * (12 - 3 * up - 20 * vp) / (4 * vp)
    zero = c0 <= 0
    return _from_xyz(torch.where(zero, 0 * x, x), y, torch.where(zero, 0 * z, z))


def convert(x: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """[..., C, H, W] from ``source`` to ``target`` keeping the dtype (8-bit: OpenCV codes)."""
    u8 = x.dtype == torch.uint8
    v = x.to(torch.float64)
    if v.shape[-3] == 1:
        v = v.expand(*v.shape[:-3], 3, *v.shape[-2:])
    chans = [v[..., i, :, :] for i in range(3)]
    if u8:
        if source in _U8_CODE:
            scale, offset = _U8_CODE[source]
            chans = [(c - o) / s for c, s, o in zip(chans, scale, offset, strict=True)]
        else:
            chans = [c / 255.0 for c in chans]
    r, g, b = decode(source, *chans)
    out = list(encode(target, r, g, b))
    if u8:
        if target in _U8_CODE:
            scale, offset = _U8_CODE[target]
            out = [c * s + o for c, s, o in zip(out, scale, offset, strict=True)]
        else:
            out = [c * 255.0 for c in out]
        y = torch.stack(out, -3).round()
        if target in ("HSV", "HLS"):
            y[..., 0, :, :] = y[..., 0, :, :].remainder(180)
        return y.clamp(0, 255).to(torch.uint8)
    return torch.stack(out, -3).to(x.dtype if x.is_floating_point() else torch.float32)


@register_transformation("ColorSpaceTransformation")
class ColorSpace(Transformation):
    KEYS = ("ColorSpace",)

    def configure(self, sec) -> None:
        self.space = sec.enum("ColorSpace", list(CONVERSIONS))
        self.source, self.target = CONVERSIONS[self.space]

    def __call__(self, x: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[-3] not in (1, 3, 4):
            raise self.section.error("ColorSpace", f"a {x.shape[-3]}-channel stimulus is not "
                                     "a colour image (1, 3 or 4 channels expected)")
        if self.source == self.target and x.shape[-3] == 3:
            return x
        if x.shape[-3] == 4:
            x = x[..., :3, :, :]
        if {self.source, self.target} <= {"BGR", "RGB"}:
            if x.shape[-3] == 1:
                return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).clone()
            return x.flip(-3)  # exact channel swap, no arithmetic
        return convert(x, self.source, self.target)
