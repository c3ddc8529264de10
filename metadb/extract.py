"""The extractor contract: map/reduce over sufficient statistics.

An extractor turns each image into per-image values and folds it into a *partial* (counts, sums,
histograms). Partials merge exactly, so chunks processed by different workers (or machines) give
the same answer as one pass, and memory stays flat at any dataset size. `finalize` turns the
merged partial into dataset-level meta-features.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import numpy as np

from metadb.imageio import Decoded
from metadb.records import Record
from metadb.registry import Registry

Partial = dict[str, Any]


class Extractor:
    """Base class; subclasses set name/version/image_columns and implement update/finalize."""

    name: ClassVar[str]
    version: ClassVar[str]
    needs_pixels: ClassVar[bool] = True
    image_columns: ClassVar[dict[str, str]] = {}  # per-image column -> DuckDB type

    def __init__(self, **params: Any):
        self._params = params

    def params(self) -> dict[str, Any]:
        """Recorded with every value this extractor produces."""
        return dict(self._params)

    def new_partial(self) -> Partial:
        return {}

    def update(self, partial: Partial, image: Decoded | None, record: Record) -> dict[str, Any]:
        """Fold one image into `partial`; return its per-image column values."""
        raise NotImplementedError

    def merge(self, a: Partial, b: Partial) -> Partial:
        """Key-wise sum: numbers, numpy arrays and Counters all add exactly."""
        out = dict(a)
        for k, v in b.items():
            out[k] = out[k] + v if k in out else v
        return out

    def finalize(self, partial: Partial) -> dict[str, float]:
        raise NotImplementedError


extractors: Registry[type[Extractor]] = Registry("extractor")
register_extractor = extractors.register_class
create_extractor = extractors.create


def counter_quantile(counts: Counter, q: float) -> float:
    """Exact quantile (lower) of a value->count Counter, without expanding it."""
    items = sorted(counts.items())
    total = sum(c for _, c in items)
    target = q * (total - 1)
    seen = 0
    for value, c in items:
        seen += c
        if seen > target:
            return float(value)
    return float(items[-1][0])


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy in bits of a vector of counts (zeros ignored): scipy.stats.entropy(counts, base=2).

    Written out because importing scipy.stats costs about 1 s of every ingest, for one line.
    """
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def histogram_quantile(hist: np.ndarray, q: float) -> float:
    """Quantile of values binned into len(hist) equal bins over [0, 1] (bin centres)."""
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    return float((np.searchsorted(cdf, q) + 0.5) / len(hist))
