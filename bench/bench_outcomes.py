"""Outcomes benchmark: metadb against a pandas implementation of the same work, in the same run.

1. Import the 12 MLflow exports of Juodelyte et al. (20,157 runs) with `--select min:val_loss`.
   pandas does what metadb does: read the same columns, drop blank lines, parse and range-check
   the metric, refuse duplicate run ids, canonicalise dataset names, encode the hyperparameters
   as JSON, mark the lowest-val_loss finished run per pair, and insert everything into a DuckDB
   table in one transaction. The two stores are then compared row for row. Then the same grid as
   one Parquet file (how an evidence pack ships it): metadb's import against pandas reading the
   Parquet file and doing the same work. metadb's selection is recomputed over every stored run
   inside the transaction (an UPDATE over the store), where pandas selects within the batch.
2. best-source over 100,000 outcome rows (200 sources x 50 targets x 10 seeds), for each of the
   50 targets: the DuckDB macro (`SELECT * FROM best_source(?)`, one call per target, on a
   read-only handle) against pandas filtering the in-memory frame to the target, then
   groupby/mean/std/count and sorting; and against pandas grouping all targets at once, which is
   the cheapest a pandas user could do. Rankings are checked identical.

Needs pandas (`pip install pandas`; it is not a metadb dependency). Prints each ratio as
pandas time / metadb time (above 1 = metadb faster); best of --repeat runs.
Usage: python bench/bench_outcomes.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import json
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
def synthetic_outcomes(db: str, tmp: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    src, tgt, seed = np.meshgrid(np.arange(200), np.arange(50), np.arange(10), indexing="ij")
    df = pd.DataFrame({"source": [f"s{i:03d}" for i in src.ravel()], "target": [f"t{i:02d}" for i in tgt.ravel()],
                       "seed": seed.ravel(), "value": rng.uniform(0.5, 1.0, src.size)})
    csv = tmp / "outcomes_100k.csv"
    df.to_csv(csv, index=False)
    t0 = time.perf_counter()
    (r,) = outcomes.import_outcomes(db, str(csv), "long", metric="auc")
    print(f"(setup) metadb imported {r.rows:,} long-format outcome rows in {time.perf_counter() - t0:.2f} s")
    return df


def pandas_rank(g: pd.DataFrame, target: str) -> list[str]:
    agg = g[g.source != target].groupby("source")["value"].agg(["mean", "std", "count"])
    return agg.reset_index().sort_values(["mean", "source"], ascending=[False, True])["source"].tolist()


def pandas_per_target(df: pd.DataFrame, targets: list[str]) -> dict[str, list[str]]:
    return {t: pandas_rank(df[df.target == t], t) for t in targets}


def pandas_grouped(df: pd.DataFrame, targets: list[str]) -> dict[str, list[str]]:
    return {t: pandas_rank(g, t) for t, g in df.groupby("target")}


def duckdb_best_source(con, targets: list[str]) -> dict[str, list[str]]:
    return {t: [r[0] for r in con.execute("SELECT source FROM best_source(?)", [t]).fetchall()] for t in targets}


def bench_best_source(tmp: Path, repeat: int) -> None:
    db = str(tmp / "b.duckdb")
    df = synthetic_outcomes(db, tmp)
    targets = sorted(df.target.unique())
    con = store.connect(db, read_only=True)
    try:
        t_md, got = best_of(repeat, lambda: duckdb_best_source(con, targets))
        single = best_of(repeat * 10, lambda: con.execute("SELECT * FROM best_source('t00')").fetchall())[0]
    finally:
        con.close()
    t_pt, per_target = best_of(repeat, lambda: pandas_per_target(df, targets))
    t_gr, grouped = best_of(repeat, lambda: pandas_grouped(df, targets))
    assert got == per_target == grouped, "rankings differ"
    print(f"best-source for {len(targets)} targets over {len(df):,} outcome rows (one call per target), "
          f"rankings identical:")
    print(f"  metadb DuckDB macro {t_md:.3f} s ({t_md / len(targets) * 1000:.1f} ms per target; one call "
          f"{single * 1000:.1f} ms)")
    print(f"  pandas, filter per target: {t_pt:.3f} s: ratio pandas/metadb {t_pt / t_md:.2f}x")
    print(f"  pandas, one groupby for all targets: {t_gr:.3f} s: ratio pandas/metadb {t_gr / t_md:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_import(Path(d), args.repeat)
        bench_best_source(Path(d), args.repeat)


if __name__ == "__main__":
    main()
