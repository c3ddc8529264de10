"""The draft() baseline of bench_ingest.py, as the one-process script a user would write and run.

Run whole (`python bench/ingest_script.py ROOT [DRAFT]`), so its interpreter start-up and imports
count as metadb's do: the benchmark times both as whole commands.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from scipy import ndimage


def naive(root: Path, draft: int | None = None) -> float:
    """The baseline: decode every file and compute what metadb stores, in one plain process.

    Per image: content hash, size, intensity mean/std, histogram entropy, sharpness (variance of
    the Laplacian), 1-99% dynamic range and the 64-bit pHash; per dataset: float64 sums of the RGB
    values and their squares and of the first four powers of the grey levels, and the histogram.
    `draft`: decode JPEGs with DCT scaling to about this size (PIL `draft()`, one line), as metadb
    does at its working size: the fair baseline for a user who knows PIL.
    """
    t0 = time.perf_counter()
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    rgb_sum, rgb_sumsq, moments, hist_sum = np.zeros(3), np.zeros(3), np.zeros(4), np.zeros(256, dtype=np.int64)
    rows = []
    for f in sorted(root.rglob("*.jpg")):
        data = f.read_bytes()
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        im = Image.open(io.BytesIO(data))
        size = im.size
        if draft:
            im.draft("RGB", (draft, draft))
        im = im.convert("RGB")
        rgb = np.asarray(im, dtype=np.float32) * (1.0 / 255.0)
        gray = rgb @ luma
        hist = np.bincount(np.clip((gray * 255 + 0.5).astype(np.int32), 0, 255).ravel(), minlength=256)
        p = hist[hist > 0] / hist.sum()
        entropy = -(p * np.log2(p)).sum()
        sharp = ndimage.laplace(gray).var()
        cdf = np.cumsum(hist) / hist.sum()
        drange = (np.searchsorted(cdf, 0.99) - np.searchsorted(cdf, 0.01)) / 256
        px = rgb.reshape(-1, 3).astype(np.float64)
        rgb_sum += np.einsum("ij->j", px)  # as metadb: 4x faster than px.sum(axis=0) over N x 3
        rgb_sumsq += np.einsum("ij,ij->j", px, px)
        g = gray.astype(np.float64).ravel()
        g2 = g * g
        moments += (g.sum(), g2.sum(), (g2 * g).sum(), (g2 * g2).sum())
        hist_sum += hist
        bits = imagehash.phash(im).hash.flatten()
        rows.append((f.name, digest, size, g.mean(), g.std(), entropy, sharp, drange,
                     int(np.packbits(bits).view(">i8")[0])))
    return time.perf_counter() - t0


if __name__ == "__main__":
    naive(Path(sys.argv[1]), draft=int(sys.argv[2]) if len(sys.argv) > 2 else None)
