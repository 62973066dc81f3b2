"""Decoding image files to tensors the way N2D2 (OpenCV, IMREAD_UNCHANGED) sees them.

uint8 [C, H, W] with colour channels in BGR order (BGRA with alpha); grey images keep one
channel. JPEG / PNG / WebP / GIF go through torchvision.io (libjpeg-turbo, libpng): faster than
PIL; other formats (BMP, PPM/PGM, TIFF...) through Pillow. 16-bit images become float32 in
[0, 1] right away (x / 65535): n2q's 16-bit path is float, only 8-bit images are kept as
integers through the transformations; float images (Pillow mode F) stay float.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from n2q.errors import UserError

_TORCHVISION = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".pnm", ".tif",
                    ".tiff", ".webp", ".gif")


def decode_image(path: str | Path) -> torch.Tensor:
    path = Path(path)
    try:
        if path.suffix.lower() in _TORCHVISION:
            x = _decode_torchvision(path)
        else:
            x = _decode_pillow(path)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"unreadable image ({reason}): replace or remove it", file=path) from None
    if x.dim() != 3 or x.shape[1] == 0 or x.shape[2] == 0:
        raise UserError("unreadable image (empty)", file=path)
    if x.dtype != torch.uint8 and not x.is_floating_point():
        x = x.to(torch.float32) / 65535.0
    return x


def _to_bgr(x: torch.Tensor) -> torch.Tensor:
    # decoders hand back CHW views of HWC buffers: one stack reorders and compacts the planes
    # in a single pass (flip + contiguous costs three times as much)
    if x.shape[0] == 3:
        return torch.stack((x[2], x[1], x[0]))
    if x.shape[0] == 4:
        return torch.stack((x[2], x[1], x[0], x[3]))
    if x.shape[0] == 2:  # grey + alpha: OpenCV keeps... a grey image; the alpha is dropped
        return x[:1].contiguous()
    return x


def _decode_torchvision(path: Path) -> torch.Tensor:
    # torchvision 0.29 flags its decoders as deprecated (in favour of torchcodec, not installed
    # here); they remain the fastest decoders available, so the warning is silenced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, read_file
        from torchvision.io import decode_image as tv_decode

        data = read_file(str(path))
        x = tv_decode(data, mode=ImageReadMode.UNCHANGED)
        if x.shape[0] == 4 and path.suffix.lower() in (".jpg", ".jpeg"):
            # a CMYK JPEG (JPEG has no alpha): colour-convert it, as OpenCV's imread does
            x = tv_decode(data, mode=ImageReadMode.RGB)
        return _to_bgr(x)


def _decode_pillow(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.int32)[None]
            return torch.from_numpy(arr.copy())
        if img.mode == "F":
            return torch.from_numpy(np.asarray(img, dtype=np.float32)[None].copy())
        if img.mode not in ("L", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else
                              ("L" if img.mode in ("1", "LA") else "RGB"))
        arr = np.array(img, dtype=np.uint8)  # a writable copy
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return _to_bgr(torch.from_numpy(np.ascontiguousarray(arr)))
