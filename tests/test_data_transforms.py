"""Each transformation against hand-computed tensors (odd and even sizes, borders, channels)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from n2q.config import load_config
from n2q.data.transforms import load_all, make_transformation
from n2q.data.transforms.geometry import BORDERS
from n2q.data.transforms.resize import resize_float, resize_u8
from n2q.errors import UserError


def make(tmp_path: Path, body: str):
    path = tmp_path / "t.ini"
    path.write_text("[sp.Transformation-1]\n" + body)
    return make_transformation(load_config(path)["sp.Transformation-1"])


def row(values, dtype=torch.uint8) -> torch.Tensor:
    """A 1-channel, 1-row image [1, 1, W]."""
    return torch.tensor(values, dtype=dtype).view(1, 1, -1)


def test_registry_has_every_type() -> None:
    assert set(load_all()) == {
        "ColorSpaceTransformation", "RangeAffineTransformation", "RescaleTransformation",
        "PadCropTransformation", "SliceExtractionTransformation",
        "RandomResizeCropTransformation", "FlipTransformation", "NormalizeTransformation",
        "ChannelExtractionTransformation", "DistortionTransformation"}


def test_unknown_type_and_key(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"t.ini:2: \[sp.Transformation-1\] Type: unknown value "
                       r"'RescaleTransform' \(did you mean RescaleTransformation\?\)"):
        make(tmp_path, "Type=RescaleTransform\n")
    with pytest.raises(UserError, match=r"t.ini:4: \[sp.Transformation-1\] Widht: unknown key "
                       r"for a RescaleTransformation \(did you mean Width\?\)"):
        make(tmp_path, "Type=RescaleTransformation\nHeight=3\nWidht=4\n")


# -- Rescale -----------------------------------------------------------------------------------

def opencv_linear_u8_reference(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Plain-Python OpenCV INTER_LINEAR on one uint8 plane (fixed-point, SIMD vertical pass)."""
    h, w = img.shape

    def coeffs(dst: int, src: int):
        out = []
        for d in range(dst):
            f = np.float32((d + 0.5) * (src / dst) - 0.5)
            s = math.floor(f)
            f = np.float32(f - s)
            if s < 0:
                s, f = 0, np.float32(0)
            if s >= src - 1:
                s, f = src - 1, np.float32(0)
            out.append((s, min(s + 1, src - 1), int(np.rint(np.float32(1 - f) * 2048)),
                        int(np.rint(f * 2048))))
        return out

    cx, cy = coeffs(width, w), coeffs(height, h)
    out = np.zeros((height, width), np.uint8)
    for i, (y0, y1, b0, b1) in enumerate(cy):
        for j, (x0, x1, a0, a1) in enumerate(cx):
            h0 = int(img[y0, x0]) * a0 + int(img[y0, x1]) * a1
            h1 = int(img[y1, x0]) * a0 + int(img[y1, x1]) * a1
            v = ((b0 * (h0 >> 4)) >> 16) + ((b1 * (h1 >> 4)) >> 16)
            out[i, j] = min(255, max(0, (v + 2) >> 2))
    return out


def test_resize_u8_hand_values() -> None:
    # 2 -> 4: samples at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
    assert resize_u8(row([0, 100]), 1, 4).flatten().tolist() == [0, 25, 75, 100]


@pytest.mark.parametrize(("src", "dst"), [((28, 28), (32, 32)), ((7, 5), (4, 9)),
                                          ((6, 9), (13, 2)), ((5, 5), (5, 5))])
def test_resize_u8_matches_opencv_arithmetic(src, dst) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, src, dtype=np.uint8)
    got = resize_u8(torch.from_numpy(img)[None], *dst)[0].numpy()
    assert np.array_equal(got, opencv_linear_u8_reference(img, *dst))
    # and stays within one grey level of float bilinear interpolation
    ref = F.interpolate(torch.from_numpy(img)[None, None].float(), size=dst, mode="bilinear",
                        align_corners=False)[0, 0].round().numpy()
    assert np.abs(got.astype(int) - ref).max() <= 1


@pytest.mark.parametrize(("src", "dst"), [((1, 1), (3, 2)), ((2, 3), (5, 1)), ((4, 2), (1, 7)),
                                          ((37, 46), (25, 32)), ((25, 32), (37, 46))])
def test_resize_u8_batched_colour_planes(src, dst) -> None:
    # [N, C, H, W]: every plane resized on its own, odd/even widths, 1- and 2-pixel sources
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (2, 3, *src), dtype=np.uint8)
    got = resize_u8(torch.from_numpy(img), *dst)
    assert got.shape == (2, 3, *dst) and got.dtype == torch.uint8
    for n in range(2):
        for c in range(3):
            assert np.array_equal(got[n, c].numpy(), opencv_linear_u8_reference(img[n, c], *dst))


def test_resize_float_is_half_pixel_bilinear() -> None:
    x = row([0.0, 1.0], torch.float32)
    assert torch.allclose(resize_float(x, 1, 4).flatten(), torch.tensor([0, 0.25, 0.75, 1.0]))


def test_rescale_exact_size_keeps_uint8(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=RescaleTransformation\nWidth=5\nHeight=3\n")
    y = t(torch.zeros(2, 3, 8, 7, dtype=torch.uint8))  # batch of 2
    assert y.shape == (2, 3, 3, 5) and y.dtype == torch.uint8


@pytest.mark.parametrize(("fit", "size", "expected"), [
    (1, (20, 40), (5, 10)),   # (H, W) 20x40 into 10x10: r = min(0.25, 0.5)
    (0, (20, 40), (10, 20)),  # r = max(...)
    (1, (3, 7), (int(5 / 7 * 3), int(5 / 7 * 7))),
    (0, (3, 7), (int(5 / 3 * 3), int(5 / 3 * 7))),
])
def test_rescale_keep_aspect_ratio(tmp_path: Path, fit: int, size, expected) -> None:
    side = 10 if size == (20, 40) else 5
    t = make(tmp_path, f"Type=RescaleTransformation\nWidth={side}\nHeight={side}\n"
             f"KeepAspectRatio=1\nResizeToFit={fit}\n")
    assert tuple(t(torch.zeros(1, *size, dtype=torch.uint8)).shape[-2:]) == expected


# -- PadCrop -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("border", "expected"), [
    ("MinusOneReflectBorder", [2, 3, 2, 1, 2, 3, 2, 1]),
    ("ReflectBorder", [3, 2, 1, 1, 2, 3, 3, 2]),
    ("ReplicateBorder", [1, 1, 1, 1, 2, 3, 3, 3]),
    ("WrapBorder", [1, 2, 3, 1, 2, 3, 1, 2]),
    ("ConstantBorder", [9, 9, 9, 1, 2, 3, 9, 9]),
    ("MeanBorder", [2, 2, 2, 1, 2, 3, 2, 2]),
])
def test_padcrop_borders_odd_padding(tmp_path: Path, border: str, expected) -> None:
    # width 3 -> 8: 5 pixels added, left = ceil(5/2) = 3, right = 2
    t = make(tmp_path, f"Type=PadCropTransformation\nWidth=8\nHeight=1\nBorderType={border}\n"
             "BorderValue=9\n")
    assert t(row([1, 2, 3])).flatten().tolist() == expected


def test_padcrop_wide_reflect_padding(tmp_path: Path) -> None:
    # padding wider than the image (torch's reflect pad refuses this)
    t = make(tmp_path, "Type=PadCropTransformation\nWidth=9\nHeight=1\n")
    assert t(row([1, 2])).flatten().tolist() == [1, 2, 1, 2, 1, 2, 1, 2, 1]


@pytest.mark.parametrize(("width", "target", "expected"), [
    (5, 2, [2, 3]),        # crop 3: 1 at the left, 2 (the extra one) at the right
    (4, 2, [2, 3]),        # crop 2: 1 each side
    (4, 3, [1, 2, 3]),     # crop 1: at the right
    (2, 3, [2, 1, 2]),     # pad 1: at the left (top = ceil)
])
def test_padcrop_centre_split(tmp_path: Path, width: int, target: int, expected) -> None:
    t = make(tmp_path, f"Type=PadCropTransformation\nWidth={target}\nHeight=1\n")
    assert t(row(list(range(1, width + 1)))).flatten().tolist() == expected


def test_padcrop_vertical_and_additive_per_channel_value(tmp_path: Path) -> None:
    x = torch.arange(1, 7, dtype=torch.float32).view(2, 3, 1)  # 2 channels, H=3, W=1
    t = make(tmp_path, "Type=PadCropTransformation\nWidth=0\nHeight=2\nAdditiveWH=1\n"
             "BorderType=ConstantBorder\nBorderValue=-1 -2\n")
    y = t(x)
    assert y.shape == (2, 5, 1)
    assert y[:, :, 0].tolist() == [[-1, 1, 2, 3, -1], [-2, 4, 5, 6, -2]]


# -- SliceExtraction ---------------------------------------------------------------------------

def grid(h: int = 4, w: int = 5) -> torch.Tensor:
    return torch.arange(h * w, dtype=torch.uint8).view(1, h, w)


def test_slice_fixed_offset(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=SliceExtractionTransformation\nWidth=2\nHeight=3\nOffsetX=2\n"
             "OffsetY=1\n")
    assert not t.random
    assert t(grid())[0].tolist() == [[7, 8], [12, 13], [17, 18]]


def test_slice_random_offsets_inclusive_and_seeded(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=SliceExtractionTransformation\nWidth=3\nHeight=4\n"
             "RandomOffsetX=1\nRandomOffsetY=1\n")
    assert t.random
    firsts = set()
    for seed in range(60):
        y = t(grid(), torch.Generator().manual_seed(seed))
        firsts.add(int(y[0, 0, 0]))
        again = t(grid(), torch.Generator().manual_seed(seed))
        assert torch.equal(y, again)
    assert firsts == {0, 1, 2}  # offsets 0..W_img-W = 2, both ends reached; Y: 0 only


def test_slice_not_fitting_is_an_error_unless_padding(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=SliceExtractionTransformation\nWidth=3\nHeight=2\nOffsetX=4\n")
    with pytest.raises(UserError, match=r"\[sp.Transformation-1\] a 3x2 slice at \(4, 0\) does "
                       r"not fit in a 5x4 stimulus"):
        t(grid())
    t = make(tmp_path, "Type=SliceExtractionTransformation\nWidth=3\nHeight=1\nOffsetX=3\n"
             "AllowPadding=1\nBorderType=ConstantBorder\nBorderValue=99\n")
    assert t(grid())[0].tolist() == [[3, 4, 99]]


def test_slice_rotation_and_scaling(tmp_path: Path) -> None:
    x = torch.arange(9, dtype=torch.float32).view(1, 3, 3)
    t = make(tmp_path, "Type=SliceExtractionTransformation\nWidth=3\nHeight=3\n"
             "RandomRotation=1\nRandomRotationRange=90 90\n")
    y = t(x, torch.Generator().manual_seed(0))
    # a positive angle turns the content counter-clockwise, as cv::getRotationMatrix2D does
    assert torch.allclose(y, torch.rot90(x, 1, dims=(1, 2)), atol=1e-5)
    t = make(tmp_path, "Type=SliceExtractionTransformation\nWidth=3\nHeight=3\n"
             "RandomScaling=1\nRandomScalingRange=1 1\n")
    assert torch.allclose(t(x, torch.Generator().manual_seed(0)), x)
    t = make(tmp_path, "Type=SliceExtractionTransformation\nWidth=3\nHeight=1\nOffsetY=1\n"
             "RandomScaling=1\nRandomScalingRange=0.5 0.5\n")
    # half scale around the centre pixel (1, 1): samples at x = 0.5, 1, 1.5 of row 1
    assert torch.allclose(t(x, torch.Generator())[0, 0], torch.tensor([3.5, 4.0, 4.5]))


# -- RandomResizeCrop --------------------------------------------------------------------------

def test_random_resize_crop_whole_image(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=RandomResizeCropTransformation\nWidth=4\nHeight=4\n")
    x = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    y = t(x, torch.Generator().manual_seed(1))
    assert torch.equal(y, resize_u8(x, 4, 4))


def test_random_resize_crop_fallback_centred(tmp_path: Path) -> None:
    # ratio 4 cannot fit a full-area crop of a square: fallback w = 8, h = round(8 / 4) = 2
    t = make(tmp_path, "Type=RandomResizeCropTransformation\nWidth=8\nHeight=2\n"
             "RatioMin=4\nRatioMax=4\n")
    x = torch.arange(64, dtype=torch.float32).view(1, 8, 8)
    assert t.crop_box(8, 8, torch.Generator().manual_seed(0)) == (3, 0, 2, 8)
    assert torch.equal(t(x, torch.Generator()), x[:, 3:5, :])


def test_random_resize_crop_areas_in_range(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=RandomResizeCropTransformation\nWidth=5\nHeight=5\n"
             "ScaleMin=0.25\nScaleMax=0.5\nRatioMin=0.5\nRatioMax=2\n")
    for seed in range(30):
        top, left, h, w = t.crop_box(40, 40, torch.Generator().manual_seed(seed))
        assert 0.2 * 1600 <= h * w <= 0.55 * 1600 and 0.4 <= w / h <= 2.5
        assert 0 <= top <= 40 - h and 0 <= left <= 40 - w


# -- Flip --------------------------------------------------------------------------------------

def test_flip_fixed(tmp_path: Path) -> None:
    x = grid(2, 3)
    t = make(tmp_path, "Type=FlipTransformation\nHorizontalFlip=1\n")
    assert t(x)[0].tolist() == [[2, 1, 0], [5, 4, 3]]
    t = make(tmp_path, "Type=FlipTransformation\nVerticalFlip=1\n")
    assert t(x)[0].tolist() == [[3, 4, 5], [0, 1, 2]]


def test_flip_random_half_and_seeded(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=FlipTransformation\nRandomHorizontalFlip=1\n")
    x = grid(2, 3)
    flipped = [not torch.equal(t(x, torch.Generator().manual_seed(s)), x) for s in range(200)]
    assert 70 < sum(flipped) < 130
    assert all(torch.equal(t(x, torch.Generator().manual_seed(s)),
                           t(x, torch.Generator().manual_seed(s))) for s in range(5))


# -- RangeAffine, Normalize --------------------------------------------------------------------

def test_range_affine_per_channel(tmp_path: Path) -> None:
    x = torch.full((3, 1, 2), 100, dtype=torch.uint8)
    t = make(tmp_path, "Type=RangeAffineTransformation\nFirstOperator=Minus\n"
             "FirstValue=10 20 40\nSecondOperator=Divides\nSecondValue=2\n")
    y = t(x)
    assert y.dtype == torch.float32
    assert y[:, 0, 0].tolist() == [45.0, 40.0, 30.0]
    t = make(tmp_path, "Type=RangeAffineTransformation\nFirstOperator=Multiplies\n"
             "FirstValue=3\nSecondOperator=Plus\nSecondValue=-0.5\n")
    assert t(torch.tensor([[[0.5]]]))[0, 0, 0].item() == 1.0


def test_range_affine_truncate_and_errors(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=RangeAffineTransformation\nFirstOperator=Multiplies\n"
             "FirstValue=3\nTruncate=1\n")
    assert t(row([10, 100])).flatten().tolist() == [30.0, 255.0]
    assert t(row([0.1, 0.5], torch.float32)).flatten().tolist() == pytest.approx([0.3, 1.0])
    t = make(tmp_path, "Type=RangeAffineTransformation\nFirstValue=1 2\n")
    with pytest.raises(UserError, match=r"FirstValue: 2 values for a stimulus of 3 channels"):
        t(torch.zeros(3, 2, 2))
    with pytest.raises(UserError, match="division by zero"):
        make(tmp_path, "Type=RangeAffineTransformation\nSecondOperator=Divides\n")
    with pytest.raises(UserError, match=r"FirstOperator: unknown value 'Times'"):
        make(tmp_path, "Type=RangeAffineTransformation\nFirstOperator=Times\n")


@pytest.mark.parametrize(("norm", "expected"), [
    ("MinMax", [0.0, 0.25, 1.0]),      # (x - 2) / (6 - 2)
    ("L1", [2 / 11, 3 / 11, 6 / 11]),  # L1 norm 2 + 3 + 6
    ("L2", [2 / 7, 3 / 7, 6 / 7]),      # L2 norm sqrt(4 + 9 + 36) = 7
    ("Linf", [2 / 6, 3 / 6, 1.0]),
])
def test_normalize(tmp_path: Path, norm: str, expected) -> None:
    t = make(tmp_path, f"Type=NormalizeTransformation\nNorm={norm}\n")
    y = t(row([2, 3, 6]))
    assert y.dtype == torch.float32
    assert y.flatten().tolist() == pytest.approx(expected)


def test_normalize_norm_value(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=NormalizeTransformation\nNorm=L2\nNormValue=14\n")
    assert t(row([2, 3, 6])).flatten().tolist() == pytest.approx([4.0, 6.0, 12.0])
    assert t(row([0, 0])).flatten().tolist() == [0.0, 0.0]  # zero norm: scale 0, like OpenCV


def test_normalize_minmax_range_per_channel(tmp_path: Path) -> None:
    x = torch.tensor([[[1.0, 3.0]], [[10.0, 30.0]]])
    t = make(tmp_path, "Type=NormalizeTransformation\nNormMin=-1\nNormMax=1\nPerChannel=1\n")
    assert t(x).tolist() == [[[-1.0, 1.0]], [[-1.0, 1.0]]]
    t = make(tmp_path, "Type=NormalizeTransformation\nNormMin=-1\nNormMax=1\n")
    assert t(x).flatten().tolist() == pytest.approx([-1.0, -1 + 2 * 2 / 29, -1 + 2 * 9 / 29, 1])


# -- colour ------------------------------------------------------------------------------------

def bgr_pixel(b: int, g: int, r: int, dtype=torch.uint8) -> torch.Tensor:
    return torch.tensor([b, g, r], dtype=dtype).view(3, 1, 1)


def test_colorspace_rgb_swap_and_grey(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=ColorSpaceTransformation\nColorSpace=RGB\n")
    assert t(bgr_pixel(1, 2, 3)).flatten().tolist() == [3, 2, 1]
    assert t(torch.full((1, 2, 2), 7, dtype=torch.uint8)).shape == (3, 2, 2)
    t = make(tmp_path, "Type=ColorSpaceTransformation\nColorSpace=BGR\n")
    assert t(bgr_pixel(1, 2, 3)).flatten().tolist() == [1, 2, 3]


@pytest.mark.parametrize(("pixel", "hsv8", "hsv_float"), [
    ((0, 0, 255), [0, 255, 255], [0.0, 1.0, 1.0]),        # red
    ((0, 255, 0), [60, 255, 255], [120.0, 1.0, 1.0]),     # green
    ((255, 0, 0), [120, 255, 255], [240.0, 1.0, 1.0]),    # blue
    ((0, 128, 255), [15, 255, 255], [30.117647, 1.0, 1.0]),  # orange: 60 * 128/255 degrees
    ((51, 51, 51), [0, 0, 51], [0.0, 0.0, 0.2]),          # grey
])
def test_colorspace_hsv(tmp_path: Path, pixel, hsv8, hsv_float) -> None:
    t = make(tmp_path, "Type=ColorSpaceTransformation\nColorSpace=HSV\n")
    assert t(bgr_pixel(*pixel)).flatten().tolist() == hsv8
    got = t(bgr_pixel(*pixel, dtype=torch.float32) / 255).flatten().tolist()
    assert got == pytest.approx(hsv_float, abs=1e-4)


def test_colorspace_ycrcb_lab_luv_known_values(tmp_path: Path) -> None:
    t = make(tmp_path, "Type=ColorSpaceTransformation\nColorSpace=YCrCb\n")
    # B=0, G=0, R=255: Y = 0.299 * 255 = 76.245; Cr = (255 - Y) * 0.713 + 128 = 255.4 -> 255
    # Cb = (0 - Y) * 0.564 + 128 = 85.0
    assert t(bgr_pixel(0, 0, 255)).flatten().tolist() == [76, 255, 85]
    white = bgr_pixel(255, 255, 255)
    lab = make(tmp_path, "Type=ColorSpaceTransformation\nColorSpace=CIELab\n")
    assert lab(white).flatten().tolist() == [255, 128, 128]
    assert lab(white.float() / 255).flatten().tolist() == pytest.approx([100, 0, 0], abs=0.01)
    luv = make(tmp_path, "Type=ColorSpaceTransformation\nColorSpace=CIELuv\n")
    # white XYZ = D65 (0.950456, 1, 1.088754); OpenCV's documented un, vn are slightly off it
    den = 0.950456 + 15 + 3 * 1.088754
    u = 1300 * (4 * 0.950456 / den - 0.19793943)
    v = 1300 * (9 / den - 0.46831096)
    assert luv(white.float() / 255).flatten().tolist() == pytest.approx([100, u, v], abs=2e-3)


@pytest.mark.parametrize("space", ["HSV", "HLS", "YCrCb", "CIELab", "CIELuv"])
def test_colorspace_round_trips(tmp_path: Path, space: str) -> None:
    x = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(0))
    there = make(tmp_path, f"Type=ColorSpaceTransformation\nColorSpace={space}\n")
    back = make(tmp_path, f"Type=ColorSpaceTransformation\nColorSpace={space}_to_BGR\n")
    assert torch.allclose(back(there(x)), x, atol=2e-3)
    x8 = (x * 255).round().to(torch.uint8)
    err = (back(there(x8)).int() - x8.int()).abs().float()
    # 8-bit encodings quantize H to 2 degrees and L to 100/255 (dark Luv colours amplify u, v
    # steps) and saturate a, b, u, v of vivid colours, like OpenCV: small on average
    assert err.mean() < 1.0 and err.max() <= 20
    rgb = make(tmp_path, f"Type=ColorSpaceTransformation\nColorSpace=RGB_to_{space}\n")
    assert torch.allclose(rgb(x.flip(0)), there(x), atol=1e-4)


@pytest.mark.parametrize(("channel", "expected"), [
    ("Blue", 10), ("Green", 20), ("Red", 200),
    ("Gray", round(0.299 * 200 + 0.587 * 20 + 0.114 * 10)),
    ("Value", 200), ("Hue", round(60 * (20 - 10) / (200 - 10) / 2)),  # 8-bit H = degrees / 2
])
def test_channel_extraction(tmp_path: Path, channel: str, expected: int) -> None:
    t = make(tmp_path, f"Type=ChannelExtractionTransformation\nCSChannel={channel}\n")
    y = t(bgr_pixel(10, 20, 200).expand(3, 2, 3))
    assert y.shape == (1, 2, 3) and y.dtype == torch.uint8
    assert int(y[0, 0, 0]) == expected


# -- Distortion --------------------------------------------------------------------------------

def test_distortion_identity_and_seeded(tmp_path: Path) -> None:
    x = torch.randint(0, 256, (1, 9, 8), dtype=torch.uint8)
    t = make(tmp_path, "Type=DistortionTransformation\n")
    assert not t.random and torch.equal(t(x), x)
    t = make(tmp_path, "Type=DistortionTransformation\nElasticScaling=2\nScaling=10\n"
             "Rotation=10\nElasticGaussianSize=5\nElasticSigma=2\n")
    a = t(x, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.dtype == torch.uint8
    assert torch.equal(a, t(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, t(x, torch.Generator().manual_seed(4)))
    with pytest.raises(UserError, match="ElasticGaussianSize: 4: use a positive odd size"):
        make(tmp_path, "Type=DistortionTransformation\nElasticGaussianSize=4\n")


def test_distortion_tiny_rotation_is_near_identity(tmp_path: Path) -> None:
    x = torch.arange(12, dtype=torch.float32).view(1, 3, 4)
    t = make(tmp_path, "Type=DistortionTransformation\nRotation=1e-9\n")
    assert torch.allclose(t(x, torch.Generator().manual_seed(0)), x, atol=1e-4)


def test_every_border_type_is_known() -> None:
    assert set(BORDERS) == {"ConstantBorder", "ReplicateBorder", "ReflectBorder", "WrapBorder",
                            "MinusOneReflectBorder", "MeanBorder"}
