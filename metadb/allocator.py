"""Keep freed image buffers in the process instead of handing them back to the OS after every image.

Decoding and measuring one image allocates and frees a few buffers of 0.2-3 MB (file bytes,
float32 RGB, grey levels, float64 copies for exact sums). glibc serves blocks above
M_MMAP_THRESHOLD by fresh `mmap`s and returns heap tops above M_TRIM_THRESHOLD to the OS; in
metadb's shard workers those lines sit inside the per-image working set, so every image's
buffers were page-faulted in again: about 1,000 minor faults per 1024x1024 JPEG, and 4.5 s of
kernel time in 16 s of CPU on 2,000 of them (bench/RESULTS.md). Raising both thresholds to
glibc's own dynamic ceiling (32 MB, trim at twice that) makes the buffers reused from the heap.

Per process and idempotent: each shard task calls it, so pool workers, Dask workers and an
inline run all get it. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the most its dynamic rule reaches
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what that rule sets alongside it

_done = False


def reuse_image_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds once in this process; True when they were set."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
