"""Outcome rows that say the same thing twice, or contradict each other.

Two outcome rows without a run id are the same measurement when they agree on source, target,
metric, fold, seed, architecture, pretraining, protocol and hyperparameters. The same value
twice (one table imported as long and again as folds, a file listed twice, a pack and a user's
copy of it) is an exact duplicate: dropped and counted, never averaged twice. Different values
are a conflict: refused, naming both rows, because averaging them answers nothing (0.91 and 0.55
for one pair rank the true best source below another). Runs with ids are checked by id instead.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from metadb.errors import MetadbError
from metadb.imports.cells import Parsed

KEY = ["source", "target", "metric", "fold", "seed", "architecture", "pretraining", "protocol", "hyperparameters"]
TYPES = {"fold": pl.Int32, "seed": pl.Int32}
DUPLICATES = "exact duplicates"


def _describe(row: dict) -> str:
    where = "".join(f" {k} {row[k]}" for k in ("fold", "seed", "architecture", "hyperparameters")
                    if row.get(k) is not None)
    return f"{row['source']}->{row['target']} {row['metric']}{where}"


def drop_duplicates(con, pending: list[tuple[Path, Parsed]]) -> None:
    """Drop exact duplicates (within the import and against the store), counted per file; refuse conflicts."""
    frames = []
    for i, (path, parsed) in enumerate(pending):
        f = parsed.frame
        if "run_id" in f.columns:
            f = f.filter(pl.col("run_id").is_null())
        if f.height:
            frames.append(f.with_columns(_part=pl.lit(i, pl.Int32), _file=pl.lit(str(path)))
                          .with_columns([pl.lit(None, TYPES.get(k, pl.Utf8)).alias(k) for k in KEY
                                         if k not in f.columns]))
    if not frames:
        return
    rows = (pl.concat([f.select(KEY + ["value", "file_row", "_part", "_file"]) for f in frames], how="vertical_relaxed")
            .with_row_index("_i"))
    values = rows.group_by(KEY).agg(pl.col("value").n_unique().alias("n"), pl.col("_i").min().alias("_first"))
    clash = values.filter(pl.col("n") > 1)
    if clash.height:
        key = clash.row(0, named=True)
        same = rows.filter(pl.all_horizontal([pl.col(k).eq_missing(key[k]) for k in KEY]))
        a = same.row(0, named=True)
        b = same.filter(pl.col("value") != a["value"]).row(0, named=True)
        raise MetadbError(f"conflicting outcomes for {_describe(a)}: {a['value']} ({a['_file']} row {a['file_row']}) "
                          f"and {b['value']} ({b['_file']} row {b['file_row']})",
                          "keep one, or tell them apart with a fold, seed or setting column")
    repeated = rows.filter(~pl.struct(KEY + ["value"]).is_first_distinct())
    firsts = rows.filter(pl.struct(KEY + ["value"]).is_first_distinct())
    stored = _against_store(con, firsts)
    drop = pl.concat([repeated.select("_part", "file_row"), stored.select("_part", "file_row")])
    counts = dict(drop.group_by("_part").len().iter_rows())
    for i, (path, parsed) in enumerate(pending):
        parsed.skips[DUPLICATES] = counts.get(i, 0)
        if counts.get(i):
            gone = drop.filter(pl.col("_part") == i)["file_row"].implode()
            keep = ~pl.col("file_row").is_in(gone)
            if "run_id" in parsed.frame.columns:
                keep = keep | pl.col("run_id").is_not_null()
            parsed.frame = parsed.frame.filter(keep)


def _against_store(con, rows: pl.DataFrame) -> pl.DataFrame:
    """Rows already stored with the same value (returned, to drop); a different value is refused."""
    con.register("_incoming_outcomes", rows.to_arrow())
    try:
        on = " AND ".join(f"o.{k} IS NOT DISTINCT FROM i.{k}" for k in KEY)
        hits = con.execute(f"""SELECT i._part, i.file_row, i._file, i.value, o.value, o.file, o.file_row, o.origin,
                                      {', '.join('i.' + k for k in KEY)}
                               FROM _incoming_outcomes i JOIN outcomes o
                                 ON o.source = i.source AND o.target = i.target AND {on}
                               WHERE o.run_id IS NULL""").fetchall()
    finally:
        con.unregister("_incoming_outcomes")
    for part, row, file, value, old, old_file, old_row, origin, *key in hits:
        if value != old:
            r = dict(zip(KEY, key))
            stored_as = f"{old_file} row {old_row}" if old_file else origin
            raise MetadbError(f"conflicting outcomes for {_describe(r)}: {value} ({file} row {row}) and {old} "
                              f"already stored (from {stored_as})",
                              "keep one, or tell them apart with a fold, seed or setting column")
    return pl.DataFrame([(h[0], h[1]) for h in hits], schema={"_part": pl.Int32, "file_row": pl.Int64}, orient="row")
