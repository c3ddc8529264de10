"""Outcomes benchmark (issue 4), each against a pandas implementation of the same work, same run.

1. Import the 12 MLflow exports of Juodelyte et al. (20,157 runs) with `--select min:val_loss`:
   metadb (parse, validate every cell, select, one DuckDB transaction per file) against pandas
   read_csv + idxmin per pair + to_parquet.
2. best-source over 100,000 outcome rows (200 sources x 50 targets x 10 seeds): the DuckDB macro
   against pandas groupby/mean/std/rank, for every target.

Needs pandas (`pip install pandas`; it is not a metadb dependency). Usage: python bench/bench_outcomes.py
"""

from __future__ import annotations

import glob
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from metadb import outcomes, store

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "juodelyte-2024" / "finetuned_AUCs"


def pandas_import(out: Path) -> int:
    frames = []
    for f in sorted(glob.glob(str(REFERENCE / "*.csv"))):
        df = pd.read_csv(f).dropna(how="all")
        df = df[(df["test_auc"] >= 0) & (df["test_auc"] <= 1)]
        df["is_selected"] = False
        df.loc[df.groupby(["source_flag", "target_flag"])["val_loss"].idxmin(), "is_selected"] = True
        frames.append(df[["Run ID", "source_flag", "target_flag", "test_auc", "is_selected", "lr", "momentum", "wd"]])
    all_runs = pd.concat(frames)
    all_runs.to_parquet(out)
    return len(all_runs)


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def synthetic_outcomes(db: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    src, tgt, seed = np.meshgrid(np.arange(200), np.arange(50), np.arange(10), indexing="ij")
    df = pd.DataFrame({"source": [f"s{i}" for i in src.ravel()], "target": [f"t{i}" for i in tgt.ravel()],
                       "seed": seed.ravel(), "value": rng.uniform(0.5, 1.0, src.size)})
    csv = Path(db).with_suffix(".csv")
    df.to_csv(csv, index=False)
    outcomes.import_outcomes(db, str(csv), "long", metric="auc")
    return df


def pandas_best_source(df: pd.DataFrame) -> dict:
    out = {}
    for target, g in df.groupby("target"):
        agg = g[g.source != target].groupby("source")["value"].agg(["mean", "std", "count"])
        out[target] = agg.sort_values("mean", ascending=False).index.tolist()
    return out


def duckdb_best_source(db: str, targets: list[str]) -> dict:
    con = store.connect(db, read_only=True)
    try:
        return {t: [r[0] for r in con.execute("SELECT source FROM best_source(?)", [t]).fetchall()] for t in targets}
    finally:
        con.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        t_pd, n_pd = timed(pandas_import, Path(d) / "runs.parquet")
        t_md, results = timed(outcomes.import_outcomes, str(Path(d) / "m.duckdb"), str(REFERENCE / "*.csv"), "mlflow",
                              "test_auc", "min:val_loss")
        n_md = sum(r.rows for r in results)
        print(f"import 12 MLflow exports ({n_md:,} runs): pandas {t_pd:.2f} s, metadb {t_md:.2f} s: "
              f"ratio pandas/metadb {t_pd / t_md:.2f}x (pandas kept {n_pd:,})")
        db = str(Path(d) / "b.duckdb")
        df = synthetic_outcomes(db)
        targets = sorted(df.target.unique())
        t_pd, expected = timed(pandas_best_source, df)
        t_md, got = timed(duckdb_best_source, db, targets)
        assert got == expected, "rankings differ"
        print(f"best-source for {len(targets)} targets over {len(df):,} outcome rows: pandas {t_pd:.3f} s, "
              f"metadb (DuckDB macro) {t_md:.3f} s: ratio pandas/metadb {t_pd / t_md:.2f}x; rankings identical")


if __name__ == "__main__":
    main()
