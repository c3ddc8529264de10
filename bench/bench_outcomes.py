"""Outcomes benchmark: metadb against a pandas implementation of the same work, in the same run.

1. Import the 12 MLflow exports of Juodelyte et al. (20,157 runs) with `--select min:val_loss`.
   pandas does what metadb does: read the same columns, drop blank lines, parse and range-check
   the metric, refuse duplicate run ids, canonicalise dataset names, encode the hyperparameters
   as JSON, mark the lowest-val_loss finished run per pair, and insert everything into a DuckDB
   table in one transaction. The two stores are then compared row for row. Then the same grid as
   one Parquet file (how an evidence pack ships it): metadb's import against pandas reading the
   Parquet file and doing the same work. metadb's selection is recomputed over every stored run
   inside the transaction (an UPDATE over the store), where pandas selects within the batch.
2. best-source over 100,000 outcome rows (200 sources x 50 targets x 10 seeds; `--rows 10000000`
   for 1,000 seeds), for each of the 50 targets: the DuckDB macro (`SELECT * FROM best_source(?)`,
   one call per target, on a read-only handle) against the macro as it was before migration 017
   (bench/best_source_before_summary.sql, aggregating outcomes on every call), pandas filtering
   the in-memory frame to the target then groupby/mean/std/count and sorting, pandas grouping all
   targets at once (the cheapest a pandas user could do), and polars filtering per target. The
   frames are already in memory; the macro answers from the store. Rankings are checked identical.

Needs pandas (`pip install pandas`; it is not a metadb dependency). Prints each ratio as
baseline time / metadb time (above 1 = metadb faster); best of --repeat runs.
Usage: python bench/bench_outcomes.py [--repeat 3] [--rows 100000] [--best-source-only]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import duckdb
import numpy as np
import pandas as pd

from metadb import outcomes, store
from metadb.outcomes import canonical

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "juodelyte-2024" / "finetuned_AUCs"
HP = ["lr", "momentum", "wd", "batch_size", "epochs"]
USED = ["Run ID", "Status", "source_flag", "target_flag", "val_loss", "test_auc"] + HP


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


# --- 1. MLflow import ----------------------------------------------------------------------------
def pandas_import(db: str, parquet: Path | None = None) -> int:
    frames = []
    if parquet is not None:
        df = pd.read_parquet(parquet, columns=USED)
        df = df.astype(object).where(df.notna(), "").astype(str)
        df = df[(df != "").any(axis=1)].copy()
        df["file"] = str(parquet)
        frames.append(df)
    for f in ([] if parquet is not None else sorted(glob.glob(str(REFERENCE / "*.csv")))):
        df = pd.read_csv(f, usecols=USED, dtype=str, keep_default_na=False)
        df = df[(df != "").any(axis=1)].copy()
        df["file"] = f
        frames.append(df)
    runs = pd.concat(frames, ignore_index=True)
    if runs["Run ID"].duplicated().any():
        raise ValueError("duplicate run id")
    runs["value"] = pd.to_numeric(runs["test_auc"].replace("", np.nan), errors="raise")
    runs = runs[runs["value"].notna()].copy()
    if not runs["value"].between(0, 1).all():
        raise ValueError("AUC outside [0, 1]")
    key = pd.to_numeric(runs["val_loss"].replace("", np.nan), errors="raise")
    for col in ("source_flag", "target_flag"):
        names = {n: canonical(n) for n in runs[col].unique()}
        runs[col] = runs[col].map(names)
    numeric = runs[HP].apply(pd.to_numeric)
    runs["hyperparameters"] = [json.dumps(r, separators=(",", ":")) for r in numeric.to_dict("records")]
    eligible = key.notna() & (runs["Status"] == "FINISHED")
    best = key[eligible].groupby([runs["source_flag"], runs["target_flag"]]).idxmin()
    runs["is_selected"] = runs.index.isin(best.values)
    out = runs.rename(columns={"Run ID": "run_id", "Status": "status", "source_flag": "source",
                               "target_flag": "target"})[["source", "target", "value", "run_id", "status",
                                                         "hyperparameters", "is_selected", "file"]]
    con = duckdb.connect(db)
    try:
        con.execute("""CREATE TABLE outcomes (source VARCHAR, target VARCHAR, value DOUBLE, run_id VARCHAR,
                       status VARCHAR, hyperparameters VARCHAR, is_selected BOOLEAN, file VARCHAR)""")
        con.execute("BEGIN TRANSACTION")
        con.register("incoming", out)
        con.execute("INSERT INTO outcomes SELECT * FROM incoming")
        con.execute("COMMIT")
    finally:
        con.close()
    return len(out)


def metadb_import(db: str, pattern: str = str(REFERENCE / "*.csv")) -> int:
    results = outcomes.import_outcomes(db, pattern, "mlflow", "test_auc", "min:val_loss")
    return sum(r.rows for r in results)


def write_grid_parquet(path: Path) -> None:
    """The 12 exports' used columns, typed, as one Parquet file (as the juodelyte-2024 pack ships them)."""
    import polars as pl

    files = sorted(glob.glob(str(REFERENCE / "*.csv")))
    pl.concat([pl.read_csv(f, columns=USED, infer_schema_length=None) for f in files],
              how="vertical_relaxed").write_parquet(path)


def same_selection(pandas_db: str, metadb_db: str) -> bool:
    q = "SELECT run_id, source, target, value, is_selected FROM outcomes ORDER BY run_id"
    a, b = duckdb.connect(pandas_db, read_only=True), duckdb.connect(metadb_db, read_only=True)
    try:
        return a.execute(q).fetchall() == b.execute(q).fetchall()
    finally:
        a.close()
        b.close()


def bench_import(tmp: Path, repeat: int) -> None:
    counter = iter(range(10_000))
    t_pd, n_pd = best_of(repeat, lambda: pandas_import(str(tmp / f"pd{next(counter)}.duckdb")))
    t_md, n_md = best_of(repeat, lambda: metadb_import(str(tmp / f"md{next(counter)}.duckdb")))
    same = same_selection(str(tmp / "pd0.duckdb"), str(tmp / f"md{repeat}.duckdb"))
    print(f"import 12 MLflow exports ({n_md:,} runs kept; pandas {n_pd:,}), --select min:val_loss: "
          f"pandas {t_pd:.3f} s, metadb {t_md:.3f} s: ratio pandas/metadb {t_pd / t_md:.2f}x; "
          f"rows and selection identical: {same}")
    grid = tmp / "runs.parquet"
    write_grid_parquet(grid)
    t_pq, n_pq = best_of(repeat, lambda: pandas_import(str(tmp / f"pq{next(counter)}.duckdb"), grid))
    first_md = next(counter)
    t_mq, n_mq = best_of(repeat, lambda: metadb_import(str(tmp / f"mq{next(counter)}.duckdb"), str(grid)))
    selected = "SELECT run_id FROM outcomes WHERE is_selected ORDER BY run_id"
    a, b = duckdb.connect(str(tmp / "pd0.duckdb"), read_only=True), duckdb.connect(str(tmp / f"mq{first_md + 1}.duckdb"), read_only=True)
    try:
        same = a.execute(selected).fetchall() == b.execute(selected).fetchall()
    finally:
        a.close()
        b.close()
    print(f"import the same grid as one Parquet file ({n_mq:,} runs; pandas {n_pq:,}): pandas {t_pq:.3f} s, "
          f"metadb {t_mq:.3f} s: ratio pandas/metadb {t_pq / t_mq:.2f}x; same selected runs as from CSV: {same}")


# --- 2. best-source -------------------------------------------------------------------------------
BEFORE = Path(__file__).with_name("best_source_before_summary.sql")  # the macro before migration 017


def synthetic_outcomes(db: str, tmp: Path, seeds: int) -> pd.DataFrame:
    """200 sources x 50 targets x `seeds` seeds of uniform AUCs, imported by metadb from a long CSV."""
    import polars as pl

    rng = np.random.default_rng(0)
    src, tgt, seed = np.meshgrid(np.arange(200), np.arange(50), np.arange(seeds), indexing="ij")
    frame = pl.DataFrame({"source": np.char.add("s", np.char.zfill(src.ravel().astype(str), 3)),
                          "target": np.char.add("t", np.char.zfill(tgt.ravel().astype(str), 2)),
                          "seed": seed.ravel(), "value": rng.uniform(0.5, 1.0, src.size)})
    csv = tmp / f"outcomes_{frame.height}.csv"
    frame.write_csv(csv)
    t0 = time.perf_counter()
    (r,) = outcomes.import_outcomes(db, str(csv), "long", metric="auc")
    print(f"(setup) metadb imported {r.rows:,} long-format outcome rows in {time.perf_counter() - t0:.1f} s "
          f"(outcome_summary refreshed in the same transaction)")
    return frame.to_pandas()


def pandas_rank(g: pd.DataFrame, target: str) -> list[str]:
    agg = g[g.source != target].groupby("source")["value"].agg(["mean", "std", "count"])
    return agg.reset_index().sort_values(["mean", "source"], ascending=[False, True])["source"].tolist()


def pandas_per_target(df: pd.DataFrame, targets: list[str]) -> dict[str, list[str]]:
    return {t: pandas_rank(df[df.target == t], t) for t in targets}


def pandas_grouped(df: pd.DataFrame, targets: list[str]) -> dict[str, list[str]]:
    return {t: pandas_rank(g, t) for t, g in df.groupby("target")}


def polars_per_target(frame, targets: list[str]) -> dict[str, list[str]]:
    import polars as pl

    out = {}
    for t in targets:
        agg = (frame.filter((pl.col("target") == t) & (pl.col("source") != t)).group_by("source")
               .agg(pl.col("value").mean().alias("mean"), pl.col("value").std().alias("std"), pl.len())
               .sort(["mean", "source"], descending=[True, False]))
        out[t] = agg["source"].to_list()
    return out


def answer_drift(new: list[tuple], old: list[tuple]) -> float:
    """Max relative difference of the float columns; every other column must be equal.

    Means and stds are sums over the same rows in another order (DuckDB aggregates in parallel),
    so they may differ in the last bits.
    """
    assert len(new) == len(old), "answers differ in length"
    worst = 0.0
    for a, b in zip(new, old):
        for u, v in zip(a, b):
            if isinstance(u, float) and isinstance(v, float):
                worst = max(worst, abs(u - v) / max(abs(v), 1e-300))
            else:
                assert u == v, f"answers differ: {a} vs {b}"
    return worst


def duckdb_best_source(con, targets: list[str], macro: str = "best_source") -> dict[str, list[str]]:
    return {t: [r[0] for r in con.execute(f"SELECT source FROM {macro}(?)", [t]).fetchall()] for t in targets}


def bench_best_source(tmp: Path, repeat: int, rows: int) -> None:
    import polars as pl

    db = str(tmp / "b.duckdb")
    df = synthetic_outcomes(db, tmp, max(1, rows // 10_000))
    frame = pl.from_pandas(df)
    targets = sorted(df.target.unique())
    con = store.connect(db, read_only=True)
    try:
        con.execute(BEFORE.read_text())
        t_md, got = best_of(repeat, lambda: duckdb_best_source(con, targets))
        t_old, old = best_of(repeat, lambda: duckdb_best_source(con, targets, "best_source_before"))
        one = "SELECT * FROM best_source('t00')"
        single = best_of(repeat * 10, lambda: con.execute(one).fetchall())[0]
        drift = answer_drift(con.execute(one + " ORDER BY rank").fetchall(),
                             con.execute("SELECT * FROM best_source_before('t00') ORDER BY rank").fetchall())
    finally:
        con.close()
    t_pt, per_target = best_of(repeat, lambda: pandas_per_target(df, targets))
    t_gr, grouped = best_of(repeat, lambda: pandas_grouped(df, targets))
    t_pl, polars_ranked = best_of(repeat, lambda: polars_per_target(frame, targets))
    assert got == old == per_target == grouped == polars_ranked, "rankings differ"
    k = len(targets)
    print(f"best-source for {k} targets over {len(df):,} outcome rows (one call per target), load average "
          f"{os.getloadavg()[0]:.1f}; rankings identical (metadb, the macro before 017, pandas, polars); every "
          f"column of t00's answer equal to the macro before 017's (mean and std to {drift:.1e} relative)")
    print(f"  metadb DuckDB macro {t_md:.3f} s ({t_md / k * 1000:.1f} ms per call; one literal call "
          f"`SELECT * FROM best_source('t00')` {single * 1000:.1f} ms)")
    for name, t in [("the macro before 017 (aggregating outcomes per call)", t_old),
                    ("pandas, filter per target", t_pt), ("pandas, one groupby for all targets", t_gr),
                    ("polars, filter per target", t_pl)]:
        print(f"  {name}: {t:.3f} s ({t / k * 1000:.1f} ms per target): ratio it/metadb {t / t_md:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000,
                        help="best-source outcome rows (200 sources x 50 targets x rows/10,000 seeds), e.g. 10000000")
    parser.add_argument("--best-source-only", action="store_true", help="skip the import benchmark")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if not args.best_source_only:
            bench_import(Path(d), args.repeat)
        bench_best_source(Path(d), args.repeat, args.rows)


if __name__ == "__main__":
    main()
