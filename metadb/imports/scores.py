"""Transferability scores (published LogME, LEEP, ...) and their combinations (LP x FU)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from metadb import store
from metadb.errors import MetadbError
from metadb.imports.cells import BLANK, Parsed, first_column, drop_blank, integers, names, now, numbers, read_csv, require
from metadb.imports.cells import ImportResult, per_file
from metadb.imports.commit import import_files
from metadb.imports.outcome_formats import _matrix_cells

def _read_scores(path: Path, metric: str, fmt: str) -> Parsed:
    if fmt == "matrix":
        cells, skips = _matrix_cells(path, None)
    else:
        df, blank = drop_blank(read_csv(path))
        src = first_column(df, "source", "model") or "source"
        require(df, path, [src, "target", "value"],
                "expected source (or model),target,value[,metric_version,params,n,seed,runtime_s]")
        values = numbers(df, "value", path)
        extra = {c: df[c] for c in ("metric_version", "params") if c in df.columns}
        extra.update({c: integers(df, c, path) for c in ("n", "seed") if c in df.columns})
        if "runtime_s" in df.columns:
            extra["runtime_s"] = numbers(df, "runtime_s", path)
        cells = df.select("file_row").with_columns(source=names(df, src, path), target=names(df, "target", path),
                                                   value=values, **extra)
        skips = {"empty values": int(values.is_null().sum()), BLANK: blank}
        cells = cells.filter(pl.col("value").is_not_null())
    frame = cells.with_columns(metric=pl.lit(metric), file=pl.lit(str(path)), computed_at=pl.lit(now()))
    return Parsed(frame, skips)


def import_scores(db: str | Path | None, pattern: str, metric: str, fmt: str = "matrix",
                  origin: str = "import") -> list[ImportResult]:
    """Transferability scores of one metric (published LogME, LEEP, ...) from matrix or long CSVs."""
    if fmt not in ("matrix", "long"):
        raise MetadbError(f"--format {fmt!r}: expected matrix or long")
    return import_files(db, pattern, "score", fmt, {"metric": metric, "format": fmt}, "scores",
                        per_file(lambda path: _read_scores(path, metric, fmt)), origin=origin)


def store_combination(db: str | Path | None, metrics: list[str], name: str) -> int:
    """Store a min-max product of scores (see analyses.score_combination) as the score `name`."""
    from metadb.analyses.score_combination import combine

    if name in metrics:
        raise MetadbError(f"--as {name}: the combined score needs a new name, not one of its inputs")
    con = store.connect(db)
    try:
        rows = combine(con, metrics)
        with store.transaction(con):
            con.execute("DELETE FROM scores WHERE metric = ?", [name])
            con.executemany("INSERT INTO scores (source, target, metric, value, metric_version, params, computed_at, origin) "
                            "VALUES (?, ?, ?, ?, 'minmax-product/1', ?, ?, 'computed')",
                            [[s, t, name, v, json.dumps({"minmax_product": metrics}), now()] for s, t, v in rows])
        return len(rows)
    finally:
        con.close()
