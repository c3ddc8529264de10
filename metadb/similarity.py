"""Compute, cache and plot all-pairs dataset distances.

A pair's cached distance is reused while its inputs fingerprint (measure, version, parameters,
matrix-wide parameters such as MMD's bandwidth, and what each dataset's value was computed from)
is unchanged, so re-running after embedding one new dataset computes only that dataset's pairs.

Distances are computed in one feature space: `--backbone resnet50` resolves to the identity
(`resnet50.3fa9c1d2`) most of the datasets were embedded with, and the datasets embedded only
with another identity are skipped, in one line saying which and why.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any, Iterator

from metadb import store
from metadb.errors import MetadbError


@dataclass
class Matrix:
    """All pairs' distances, the identity they were computed in, and one-line notes for the user.

    Unpacks as `(columns, rows)` like every other listing.
    """

    columns: list[str]
    rows: list[tuple]
    backbone: str = ""
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator:
        return iter((self.columns, self.rows))


def _embedded(con, identity: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT dataset FROM embedding_runs WHERE backbone = ? ORDER BY 1",
                                      [identity]).fetchall()]


def feature_space(con, backbone: str, datasets: list[str] | None = None) -> tuple[str, list[str], list[str]]:
    """(identity, its datasets, notes): the one feature space `backbone` means for these datasets.

    An architecture name with several identities means the one most datasets were embedded with;
    a tie is refused, naming the identities, since either choice would hide the other.
    """
    from metadb.backbones import difference, identities, stored

    found = identities(con, backbone)
    if not found:
        raise MetadbError(f"nothing embedded with backbone {backbone!r}",
                          f"run `metadb embed DATASET --backbone {backbone}`")
    arch = stored(con, found[0]).arch
    members = {i: [d for d in _embedded(con, i) if datasets is None or d in datasets] for i in identities(con, arch)}
    ranked = sorted(found, key=lambda i: -len(members[i]))
    if len(ranked) > 1 and len(members[ranked[0]]) == len(members[ranked[1]]):
        tied = [i for i in ranked if len(members[i]) == len(members[ranked[0]])]
        spaces = "; ".join(f"{i} ({stored(con, i).describe()}: {', '.join(members[i]) or 'nothing'})" for i in tied)
        each = len(members[ranked[0]])
        raise MetadbError(f"backbone {backbone} names {len(tied)} feature spaces with {each} datasets each: {spaces}",
                          "pass one of them in full as --backbone")
    chosen = ranked[0]
    names = members[chosen]
    others = {d: i for i in reversed(list(members)) if i != chosen for d in members[i] if d not in names}
    never = [d for d in (datasets or []) if d not in names and d not in others]
    notes = []
    if others or never:
        why = [f"{d} (embedded only as {i}: {difference(con, chosen, i)})" for d, i in sorted(others.items())]
        why += [f"{d} (not embedded with {arch})" for d in never]
        hint = f"; pass --backbone {sorted(set(others.values()))[0]} to compare those" if others else ""
        notes.append(f"compared {len(names)} datasets embedded as {chosen} ({stored(con, chosen).describe()}); "
                     f"skipped {'; '.join(why)}{hint}")
    return chosen, names, notes


def compute(db: str | Path | None, measure: str, backbone: str | None = None, datasets: list[str] | None = None,
            force: bool = False, shrinkage: str | None = None, **params: Any) -> Matrix:
    """All pairs (including each dataset with itself) of the datasets embedded in one backbone identity.

    `shrinkage` ('oas' or 'none') is for measures that shrink covariances when n < D; each pair's
    stored params say whether and how much shrinkage was applied.
    """
    from metadb.measures import create_measure, measures

    m = create_measure(measure, **params, **({"shrinkage": shrinkage} if shrinkage is not None else {}))
    if shrinkage is not None and not m.shrinks:
        which = [e.name for e in measures.entries() if getattr(e.factory, "shrinks", False)]
        raise MetadbError(f"measure {measure} applies no covariance shrinkage",
                          f"--shrinkage is for {', '.join(which)}")
    if m.needs_backbone and not backbone:
        raise MetadbError(f"measure {measure} needs --backbone (the embeddings it compares)")
    con = store.connect(db)
    try:
        notes: list[str] = []
        if m.needs_backbone:
            backbone, names, notes = feature_space(con, backbone, datasets)
        else:
            backbone = ""
            names = datasets or [r[0] for r in
                                 con.execute("SELECT dataset FROM meta_features_wide ORDER BY 1").fetchall()]
        if len(names) < 2:
            raise MetadbError(f"{measure}: {len(names)} dataset(s) available with backbone {backbone!r}; need 2",
                              "embed more datasets first (metadb embed NAME --backbone ...)")
        version = measures.entry(measure).version
        wide = m.prepare(con, names, backbone)
        prints = {d: m.inputs(con, d, backbone) for d in names}
        key = json.dumps([measure, version, m.params(), wide], sort_keys=True, default=str)
        fp = {p: hashlib.sha256(f"{key}|{prints[p[0]]}|{prints[p[1]]}".encode()).hexdigest()[:16]
              for p in combinations_with_replacement(names, 2)}
        cached, shrunk = {}, False
        for a, b, v, f, pj in con.execute("""SELECT dataset_a, dataset_b, value, inputs_fingerprint, params
                                              FROM similarities WHERE measure = ? AND backbone = ?""",
                                           [measure, backbone]).fetchall():
            if fp.get((a, b)) == f and not force:
                cached[(a, b)] = v
                shrunk |= bool(json.loads(pj or "{}").get("shrunk"))
        todo = [p for p in fp if p not in cached]
        fresh = m.pairwise(con, todo, backbone) if todo else {}
        details = getattr(m, "details_", {})
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        with store.transaction(con):
            for (a, b), v in fresh.items():
                pair = {**m.params(), **wide, **details.get((a, b), {})}
                shrunk |= bool(pair.get("shrunk"))
                con.execute("DELETE FROM similarities WHERE measure = ? AND backbone = ? AND dataset_a = ? "
                            "AND dataset_b = ?", [measure, backbone, a, b])
                con.execute("""INSERT INTO similarities (dataset_a, dataset_b, measure, backbone, value,
                                      measure_version, params, inputs_fingerprint, source, computed_at, origin)
                               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'computed', ?, 'computed')""",
                            [a, b, measure, backbone, v, version, json.dumps(pair, default=str), fp[(a, b)], now])
        values = {**cached, **fresh}
        if shrunk:
            notes += _shrinkage_decided(con, measure, params, values, backbone)
        rows = [(a, b, values[(a, b)], "cached" if (a, b) in cached else "computed") for a, b in sorted(fp)]
        return Matrix(["dataset_a", "dataset_b", "distance", "status"], rows, backbone, notes)
    finally:
        con.close()


def nearest(values: dict[tuple[str, str], float]) -> dict[str, str]:
    """Each dataset's nearest other dataset (ties broken by name)."""
    names = sorted({d for p in values for d in p})
    d = {**values, **{(b, a): v for (a, b), v in values.items()}}
    return {a: min((d[(a, b)], b) for b in names if b != a)[1] for a in names if len(names) > 1}


def _shrinkage_decided(con, measure: str, params: dict, values: dict, backbone: str) -> list[str]:
    """One line when some dataset's nearest neighbour differs with and without the shrinkage applied."""
    from metadb.measures import create_measure

    plain = create_measure(measure, **params, shrinkage="none").pairwise(con, list(values), backbone)
    with_, without = nearest(values), nearest(plain)
    flips = [f"nearest to {a} is {with_[a]} with it, {without[a]} without" for a in with_ if with_[a] != without[a]]
    if not flips:
        return []
    return [f"OAS shrinkage (applied where a dataset or class has fewer images than feature dimensions) decided "
            f"the order: {'; '.join(flips)}; --shrinkage none compares without it"]


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
