"""Compute, cache and plot all-pairs dataset distances.

A pair's cached distance is reused while its inputs fingerprint (measure, version, parameters,
and what each dataset's value was computed from) is unchanged, so re-running after embedding
one new dataset computes only that dataset's pairs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

from metadb import store
from metadb.errors import MetadbError


def _datasets(con, measure, backbone: str) -> list[str]:
    if measure.needs_backbone:
        return [r[0] for r in con.execute("SELECT DISTINCT dataset FROM embedding_runs WHERE backbone = ? ORDER BY 1",
                                          [backbone]).fetchall()]
    return [r[0] for r in con.execute("SELECT dataset FROM meta_features_wide ORDER BY 1").fetchall()]


def compute(db: str | Path | None, measure: str, backbone: str | None = None, datasets: list[str] | None = None,
            force: bool = False, **params: Any) -> tuple[list[str], list[tuple]]:
    """All pairs (including each dataset with itself) of the datasets embedded with `backbone`."""
    from metadb.measures import create_measure, measures

    m = create_measure(measure, **params)
    if m.needs_backbone and not backbone:
        raise MetadbError(f"measure {measure} needs --backbone (the embeddings it compares)")
    backbone = backbone if m.needs_backbone else ""
    con = store.connect(db)
    try:
        names = datasets or _datasets(con, m, backbone)
        if len(names) < 2:
            raise MetadbError(f"{measure}: {len(names)} dataset(s) available with backbone {backbone!r}; need 2",
                              "embed more datasets first (metadb embed NAME --backbone ...)")
        version = measures.entry(measure).version
        prints = {d: m.inputs(con, d, backbone) for d in names}
        key = json.dumps([measure, version, m.params()], sort_keys=True, default=str)
        fp = {p: hashlib.sha256(f"{key}|{prints[p[0]]}|{prints[p[1]]}".encode()).hexdigest()[:16]
              for p in combinations_with_replacement(names, 2)}
        cached = {(a, b): v for a, b, v, f in con.execute(
            "SELECT dataset_a, dataset_b, value, inputs_fingerprint FROM similarities WHERE measure = ? AND backbone = ?",
            [measure, backbone]).fetchall() if fp.get((a, b)) == f and not force}
        todo = [p for p in fp if p not in cached]
        fresh = m.pairwise(con, todo, backbone) if todo else {}
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        with store.transaction(con):
            for (a, b), v in fresh.items():
                con.execute("DELETE FROM similarities WHERE measure = ? AND backbone = ? AND dataset_a = ? AND dataset_b = ?",
                            [measure, backbone, a, b])
                con.execute("""INSERT INTO similarities (dataset_a, dataset_b, measure, backbone, value, measure_version,
                                                          params, inputs_fingerprint, source, computed_at, origin)
                               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'computed', ?, 'computed')""",
                            [a, b, measure, backbone, v, version, json.dumps(m.params(), default=str), fp[(a, b)], now])
        values = {**cached, **fresh}
        rows = [(a, b, values[(a, b)], "cached" if (a, b) in cached else "computed") for a, b in sorted(fp)]
        return ["dataset_a", "dataset_b", "distance", "status"], rows
    finally:
        con.close()


def plot(rows: list[tuple], path: str | Path, title: str) -> None:
    """A clustered heatmap (average-linkage order) of a symmetric distance table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    names = sorted({r[0] for r in rows} | {r[1] for r in rows})
    d = np.zeros((len(names), len(names)))
    for a, b, v, *_ in rows:
        i, j = names.index(a), names.index(b)
        d[i, j] = d[j, i] = v
    order = leaves_list(linkage(squareform(d, checks=False), "average")) if len(names) > 2 else np.arange(len(names))
    d, names = d[np.ix_(order, order)], [names[i] for i in order]
    fig, ax = plt.subplots(figsize=(3.5 + 0.7 * len(names), 2.5 + 0.6 * len(names)))
    im = ax.imshow(d, cmap="viridis_r")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{d[i, j]:.3g}", ha="center", va="center", fontsize=7,
                    color="white" if d[i, j] > d.max() / 2 else "black")
    fig.colorbar(im, ax=ax, label="distance")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
