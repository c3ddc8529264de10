"""Evidence pack benchmark: importing the Juodelyte et al. pack against importing the same study
from its published CSV files, in the same run, through the same importers.

Both import the 20,157 fine-tuning runs (mlflow format, `--select min:val_loss`, test AUC) and
the 8 metric score tables into a fresh store. The baseline is what a user did before the packs
shipped: `metadb outcomes import 'fined_*.csv' --format mlflow ...` then `metadb scores import`
per metric, i.e. the 12 MLflow exports (60 columns each, about 8 MB) and 8 CSV matrices. The pack
reads one 0.6 MB Parquet file of the 12 columns metadb keeps, and verifies sha256 checksums first.
The two stores are compared row for row. Prints csv time / pack time (above 1 = the pack is faster);
best of --repeat runs.
Usage: python bench/bench_published.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

from metadb import api, outcomes
from metadb.published import import_packs

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "juodelyte-2024"
SCORES = ("logme", "leep", "nleep", "parc", "sfda", "ncti", "lp", "fu")
ROWS = "SELECT run_id, source, target, value, is_selected, hyperparameters FROM outcomes ORDER BY run_id"
SCORE_ROWS = "SELECT source, target, metric, value FROM scores ORDER BY ALL"


def from_csv(db: Path) -> None:
    outcomes.import_outcomes(db, str(REFERENCE / "finetuned_AUCs" / "fined_*.csv"), "mlflow", "test_auc",
                             "min:val_loss", architecture="resnet18")
    for m in SCORES:
        outcomes.import_scores(db, str(REFERENCE / "results" / f"{m}_dataset.csv"), m)


def from_pack(db: Path) -> None:
    list(import_packs(db, ["juodelyte-2024"]))


def best_of(fn: Callable[[Path], None], repeat: int, base: Path) -> tuple[float, Path]:
    times = []
    for i in range(repeat):
        db = base / f"{fn.__name__}-{i}.duckdb"
        t = time.perf_counter()
        fn(db)
        times.append(time.perf_counter() - t)
    return min(times), db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory(prefix="bench-published-") as tmp:
        t_csv, db_csv = best_of(from_csv, repeat, Path(tmp))
        t_pack, db_pack = best_of(from_pack, repeat, Path(tmp))
        for sql in (ROWS, SCORE_ROWS):
            assert api.sql(sql, db_csv)[1] == api.sql(sql, db_pack)[1], "the two imports stored different rows"
    print(f"import Juodelyte et al. (20,157 runs + 8 score tables), best of {repeat}:")
    print(f"  published CSV files  {t_csv:6.2f} s")
    print(f"  evidence pack        {t_pack:6.2f} s   ratio {t_csv / t_pack:.1f}x (same rows stored)")


if __name__ == "__main__":
    main()
