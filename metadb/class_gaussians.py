"""Per-class Gaussian statistics of features, accumulated batch by batch.

Float64 sums and sums of outer products per label add exactly, so shards computed anywhere merge
into what one pass computes; the finaliser turns them into mean and eigendecomposed covariance.
`add_batch` folds one batch in and, when asked, writes its per-image vectors to Parquet.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


class GaussianAccumulator:
    """n, sum and sum of outer products per label, in float64: partials add exactly."""

    def __init__(self, dim: int):
        self.dim = dim
        self.n: dict[str, int] = {}
        self.s: dict[str, np.ndarray] = {}
        self.ss: dict[str, np.ndarray] = {}

    def add(self, label: str, x: np.ndarray) -> None:
        if label not in self.n:
            self.n[label], self.s[label], self.ss[label] = 0, np.zeros(self.dim), np.zeros((self.dim, self.dim))
        self.n[label] += len(x)
        self.s[label] += x.sum(axis=0)
        self.ss[label] += x.T @ x

    def merge(self, other: "GaussianAccumulator") -> "GaussianAccumulator":
        for label in other.n:
            if label not in self.n:
                self.n[label], self.s[label], self.ss[label] = 0, np.zeros(self.dim), np.zeros((self.dim, self.dim))
            self.n[label] += other.n[label]
            self.s[label] += other.s[label]
            self.ss[label] += other.ss[label]
        return self

    def whole(self) -> tuple[int, np.ndarray, np.ndarray]:
        return sum(self.n.values()), sum(self.s.values()), sum(self.ss.values())

    def finalize(self) -> Iterator[tuple[str, int, np.ndarray, np.ndarray, np.ndarray]]:
        """(label, n, mean, eigvals, eigvecs) with label '' for the whole dataset.

        Covariance is the unbiased sample covariance (ddof=1); eigenvectors are kept only for
        eigenvalues above the numerical floor, so a class of 50 images stores 50 vectors, not D.
        """
        groups = [("", *self.whole())] + [(k, self.n[k], self.s[k], self.ss[k]) for k in sorted(self.n)]
        for label, n, s, ss in groups:
            mean = s / n
            cov = (ss - n * np.outer(mean, mean)) / max(n - 1, 1)
            vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
            keep = vals > max(vals.max(), 0.0) * 1e-12
            yield label, n, mean, np.clip(vals[keep], 0, None), vecs[:, keep]


def per_image_schema(dim: int):
    import pyarrow as pa

    return pa.schema([("image_id", pa.string()), ("label", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])


def add_batch(acc: GaussianAccumulator, writer, f: np.ndarray, ids: list[str], labels: list[str]) -> None:
    """Fold a batch into the per-class sums (float64) and, when asked, the per-image Parquet."""
    import pyarrow as pa

    f64 = f.astype(np.float64)
    for label in sorted(set(labels)):
        acc.add(label, f64[[i for i, l in enumerate(labels) if l == label]])
    if writer is not None:
        writer.write_table(pa.table({"image_id": ids, "label": labels,
                                     "embedding": pa.FixedSizeListArray.from_arrays(f.ravel(), f.shape[1])},
                                    schema=writer.schema))
