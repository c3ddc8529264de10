"""`meta`: distance between standardised meta-feature vectors (no backbone needed)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cosine, euclidean

from metadb.errors import MetadbError
from metadb.measures import Measure, register_measure


@register_measure
class Meta(Measure):
    """Euclidean (default) or cosine distance of z-scored meta-features shared by both datasets."""

    name = "meta"
    version = "1"
    needs_backbone = False

    def inputs(self, con, dataset: str, backbone: str) -> str:
        row = con.execute("SELECT fingerprint FROM datasets WHERE name = ?", [dataset]).fetchone()
        return row[0] if row and row[0] else ""

    def pairwise(self, con, pairs, backbone):
        metric = self._params.get("metric", "euclidean")
        if metric not in ("euclidean", "cosine"):
            raise MetadbError(f"meta measure: metric {metric!r}; expected euclidean or cosine")
        rel = con.execute("SELECT * FROM meta_features_wide ORDER BY dataset")
        table = {r[0]: np.array(r[1:], dtype=float) for r in rel.fetchall()}
        missing = sorted({d for p in pairs for d in p} - table.keys())
        if missing:
            raise MetadbError(f"no meta-features for {', '.join(missing)}", "ingest those datasets first")
        x = np.vstack(list(table.values()))
        mu, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        z = {d: (v - mu) / np.where(sd > 0, sd, 1.0) for d, v in table.items()}
        out = {}
        for a, b in pairs:
            ok = ~np.isnan(z[a]) & ~np.isnan(z[b]) & (sd > 0)
            if a == b:
                out[(a, b)] = 0.0
                continue
            if not ok.any():  # a distance of 0 would read as "identical"
                raise MetadbError(f"meta: {a} and {b} share no meta-feature that varies across the stored datasets",
                                  "ingest both with the same extractors, or use an embedding measure")
            u, v = z[a][ok], z[b][ok]
            out[(a, b)] = float(euclidean(u, v) if metric == "euclidean" else cosine(u, v))
        return out
