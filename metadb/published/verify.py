"""Recompute a study's headline figures from its pack and set them beside the published values.

The pack is imported into a scratch store (so nothing a user imported can move a figure), then
each figure of the manifest is answered by metadb's own analyses (the `correlate`,
`metric_agreement` and `best_source` queries, the LP x FU combination, run selection). A figure agrees when it
rounds to the published value at the precision the study printed it.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from metadb import api, store
from metadb.outcomes import store_combination
from metadb.published.importer import import_packs
from metadb.published.packs import Pack, get

COLUMNS = ["pack", "figure", "published", "recomputed", "agrees"]


def agrees(published: str, value: float | None) -> bool:
    """|value - published| is at most half a unit of the published value's last digit."""
    if value is None:
        return False
    exponent = Decimal(published).as_tuple().exponent
    return abs(Decimal(repr(value)) - Decimal(published)) <= Decimal(5) * Decimal(10) ** (exponent - 1)


def _selection(db: Path, pack: Pack) -> int:
    """Pairs whose selected run's test AUC equals the published AUC matrix cell (to 1e-12).

    A selected pair the matrix lacks makes the figure -1: the selection then answers another question.
    """
    table = next(t for t in pack.tables if t["file"] == "aucs.parquet")
    published = (pl.read_parquet(pack.path(table)).unpivot(index="source", variable_name="target")
                 .drop_nulls("value"))
    con = store.connect(db, read_only=True)
    try:
        derived = con.execute("""SELECT source, target, value FROM outcomes
                                 WHERE is_selected AND metric = 'test_auc'""").pl()
    finally:
        con.close()
    both = published.join(derived, on=["source", "target"], how="full", suffix="_derived")
    same = (both["value"] - both["value_derived"]).abs() <= 1e-12
    return int(same.fill_null(False).sum()) if both.height == published.height else -1


def _best_source(db: Path, source: str, targets: list[str]) -> int:
    """Targets for which best-source ranks `source` first on observed outcomes."""
    firsts = [api.query("best_source", db, target=t)[1][:1] for t in targets]
    return sum(1 for rows in firsts if rows and rows[0][1:3] == (source, "outcome"))


def _figure(db: Path, pack: Pack, figure: dict[str, Any]) -> float | None:
    if figure.get("check") == "selection":
        return float(_selection(db, pack))
    if figure.get("check") == "best_source":
        return float(_best_source(db, **figure["params"]))
    cols, rows = api.query(figure["query"], db, **figure["params"])
    row = rows[-1] if figure.get("row") == "last" else rows[0]
    return row[cols.index(figure["column"])]


def verify(name: str) -> tuple[list[str], list[tuple]]:
    """(figure, published, recomputed, agrees) for each headline figure of the pack."""
    pack = get(name)
    with tempfile.TemporaryDirectory(prefix="metadb-verify-") as tmp:
        db = Path(tmp) / "verify.duckdb"
        list(import_packs(db, [name]))  # imports as it is consumed
        if "combine" in pack.manifest:
            store_combination(db, pack.manifest["combine"]["metrics"], pack.manifest["combine"]["as"])
        rows = []
        for figure in pack.manifest["figures"]:
            value = _figure(db, pack, figure)
            rows.append((pack.name, figure["figure"], figure["published"], value,
                         "yes" if agrees(figure["published"], value) else "NO"))
    return COLUMNS, rows
