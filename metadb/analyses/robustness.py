"""`robustness`: is this source robust to shortcuts? `source_robustness` plus the study's test between sources.

"Source Matters" (statistical_tests.ipynb) compares ImageNet and RadImageNet at each confounder
rate with `scipy.stats.ttest_ind(imnet, radnet, permutations=10000)` over the folds' AUCs on the
test set with confounded negatives. SciPy 1.17 spells that `method=PermutationMethod(n_resamples=
10000)`; with 5 folds per source there are only C(10, 5) = 252 distinct splits, so SciPy runs the
exact test (the notebook's recurring p = 0.0079 is 2/252). The seed is fixed so larger studies,
where it samples, give the same p twice. The means and stds come from the SQL macro (the DuckDB
CLI runs `SELECT * FROM source_robustness('chest')`); only the p-value needs Python.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from metadb import queries
from metadb.errors import MetadbError
from metadb.queries import Column, Param, register_python_query

PERMUTATIONS = 10_000


@register_python_query(
    "robustness",
    "Is this source robust to shortcuts? Per source and confounder rate: mean and std over folds of the AUC on the "
    "clean test set, on the test set with the confounder on the negatives, their gap, and the permutation t-test "
    "(scipy ttest_ind, 10,000 permutations) between sources over folds (Juodelyte et al. 2024).",
    [Param("target", "VARCHAR", None, "the target the confounded variants were derived from"),
     Param("kind", "VARCHAR", "NULL", "only this confounder: tag, lowpass, noise or attribute"),
     Param("versus", "VARCHAR", "NULL", "source every other is tested against (default: the other of two, "
                                        "else the first by name)")],
    [Column("source", "VARCHAR", "fine-tuned source"), Column("architecture", "VARCHAR", "its architecture"),
     Column("kind", "VARCHAR", "confounder"), Column("rate", "DOUBLE", "share of training positives confounded"),
     Column("n_folds", "BIGINT", "folds"),
     Column("auc_clean", "DOUBLE", "mean AUC, clean test"), Column("auc_clean_std", "DOUBLE", "std over folds"),
     Column("auc_confounded", "DOUBLE", "mean AUC, confounder on the test negatives"),
     Column("auc_confounded_std", "DOUBLE", "std over folds"),
     Column("gap", "DOUBLE", "mean of clean - confounded"), Column("gap_std", "DOUBLE", "std over folds"),
     Column("versus", "VARCHAR", "the source this row is tested against"),
     Column("t", "DOUBLE", "Student t of auc_confounded, this source minus versus"),
     Column("p_value", "DOUBLE", "permutation p-value (two-sided)")],
)
def robustness(con, target: str, kind: str | None = None, versus: str | None = None):
    cols, rows = queries.run(con, "source_robustness", target=target, kind=kind)
    if not rows:
        raise MetadbError(f"no confounded outcomes derived from {target}" + (f" with kind {kind}" if kind else ""),
                          f"run one first: metadb confound --target {target} --kind tag --rate 0,0.5,1 --sources ...")
    at = {c: i for i, c in enumerate(cols)}
    by_variant: dict[str, list[tuple]] = defaultdict(list)
    for r in rows:
        by_variant[r[at["variant"]]].append(r)
    if versus is not None and versus not in {r[at["source"]] for r in rows}:
        raise MetadbError(f"--versus {versus!r}: no confounded outcomes of that source for {target}")
    out = []
    for r in rows:
        peers = by_variant[r[at["variant"]]]
        other = _versus(r, peers, at, versus)
        t = p = None
        if other is not None:
            t, p = permutation_ttest(r[at["confounded_folds"]], other[at["confounded_folds"]])
        out.append((r[at["source"]], r[at["architecture"]], r[at["kind"]], r[at["rate"]], r[at["n_folds"]],
                    r[at["auc_clean"]], r[at["auc_clean_std"]], r[at["auc_confounded"]], r[at["auc_confounded_std"]],
                    r[at["gap"]], r[at["gap_std"]], None if other is None else _label(other, peers, at), t, p))
    return robustness.columns, out


def _versus(row: tuple, peers: list[tuple], at: dict[str, int], versus: str | None) -> tuple | None:
    """The peer this row is compared with: the named source, the other of two, else the first by name."""
    others = [q for q in peers if q is not row]
    if versus is not None:
        named = [q for q in others if q[at["source"]] == versus]
        return named[0] if named else None
    if not others:
        return None
    if len(peers) == 2:
        return others[0]
    first = min(peers, key=lambda q: (q[at["source"]], q[at["architecture"]] or ""))
    return None if first is row else first


def _label(row: tuple, peers: list[tuple], at: dict[str, int]) -> str:
    same = [q for q in peers if q[at["source"]] == row[at["source"]]]
    return row[at["source"]] if len(same) == 1 else f"{row[at['source']]} ({row[at['architecture']]})"


def permutation_ttest(a, b) -> tuple[float | None, float | None]:
    """Student t and its permutation p-value, as the study's ttest_ind(a, b, permutations=10000)."""
    from scipy.stats import PermutationMethod, ttest_ind

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None, None
    res = ttest_ind(a, b, method=PermutationMethod(n_resamples=PERMUTATIONS, rng=0))
    t, p = float(res.statistic), float(res.pvalue)
    return (None if t != t else t), (None if p != p else p)
