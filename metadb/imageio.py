"""Decode one image at a bounded working resolution.

Statistics do not need 1024x1024 pixels: JPEG files are decoded with DCT scaling (PIL draft
mode, up to 8x fewer pixels and ~10x less work), other formats are box-reduced after decoding.
The working size is a recorded parameter of every extractor that sees pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from metadb.errors import ImageError
from metadb.records import Record

Image.MAX_IMAGE_PIXELS = 40_000 ** 2  # whole-slide tiles are big but not decompression bombs

BIT_DEPTH = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "LA": 8, "CMYK": 8, "YCbCr": 8,
             "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}


@dataclass(frozen=True, slots=True)
class Decoded:
    """An image as extractors see it: float32 in [0, 1], HxWx3, plus header facts."""

    rgb: np.ndarray  # float32, H x W x 3, at the working resolution
    gray: np.ndarray  # float32, H x W, luma
    pil: Image.Image  # 8-bit L or RGB image at the working resolution (for hashing)
    width: int  # original size, from the header
    height: int
    channels: int
    bit_depth: int
    fmt: str
    nbytes: int
    content_hash: str  # blake2b of the file bytes (or pixel bytes), for exact duplicates


def _to_float(im: Image.Image) -> tuple[np.ndarray, Image.Image]:
    """Scale any PIL mode to [0, 1] RGB float32 and an 8-bit PIL copy."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        lo, hi = float(a.min()), float(a.max())
        full = 65535.0 if im.mode.startswith("I;16") else (hi if hi > 0 else 1.0)
        g = np.clip(a / full, 0.0, 1.0) if lo >= 0 else (a - lo) / max(hi - lo, 1e-12)
        pil8 = Image.fromarray((g * 255.0 + 0.5).astype(np.uint8), "L")
        return np.repeat(g[..., None], 3, axis=2), pil8
    pil8 = im.convert("RGB") if im.mode not in ("L", "RGB") else im
    a = np.asarray(pil8, dtype=np.float32) * (1.0 / 255.0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a, pil8


def _reduce(im: Image.Image, working_size: int) -> Image.Image:
    factor = max(im.width, im.height) // working_size
    return im.reduce(factor) if factor >= 2 else im


def decode(record: Record, working_size: int) -> Decoded:
    """Decode a record's image; raises ImageError with a short reason for unreadable input."""
    if record.pixels is not None:
        return _decode_array(record.pixels, working_size)
    assert record.file is not None
    path = Path(record.file)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}") from None
    if not data:
        raise ImageError("zero-byte file")
    try:
        import io

        im = Image.open(io.BytesIO(data))
        width, height, mode, fmt = im.width, im.height, im.mode, (im.format or "?").lower()
        if fmt == "jpeg":
            im.draft("RGB" if mode != "L" else "L", (working_size, working_size))
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        detail = "no known image format" if isinstance(e, UnidentifiedImageError) else str(e)[:80]  # not its BytesIO
        raise ImageError(f"not a readable image ({type(e).__name__}: {detail})") from None
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    channels = len(im.getbands()) if mode not in ("P",) else 3
    bit_depth = BIT_DEPTH.get(mode, 8)
    im = _reduce(im, working_size)
    rgb, pil8 = _to_float(im)
    return Decoded(rgb, _luma(rgb), pil8, width, height, channels, bit_depth, fmt, len(data),
                   hashlib.blake2b(data, digest_size=16).hexdigest())


def _decode_array(pixels: np.ndarray, working_size: int) -> Decoded:
    a = np.ascontiguousarray(pixels)
    if a.dtype != np.uint8:
        raise ImageError(f"pixel array of dtype {a.dtype}; expected uint8")
    h, w = a.shape[:2]
    channels = 1 if a.ndim == 2 else a.shape[2]
    im = Image.fromarray(a[..., 0] if channels == 1 and a.ndim == 3 else a)
    im = _reduce(im, working_size)
    rgb, pil8 = _to_float(im)
    return Decoded(rgb, _luma(rgb), pil8, w, h, channels, 8, "array", a.nbytes,
                   hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest())


def _luma(rgb: np.ndarray) -> np.ndarray:
    # ITU-R BT.601 weights, the ones PIL's convert("L") uses
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
