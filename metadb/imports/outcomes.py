"""`import_outcomes`: fine-tuning outcomes from long, matrix, folds and MLflow files, committed as one.

Inside the import's transaction, before the insert: run ids must be new, and rows without run
ids are checked for duplicates and conflicts against each other and the store
(metadb.imports.duplicates). After it: which run answers for each pair is recomputed over every
stored run (metadb.imports.selection), and a metric without a declared direction is named.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from metadb import directions
from metadb.errors import MetadbError
from metadb.imports.cells import OUTCOME_DEFAULT_METRIC, ImportResult, Naming, Parsed, at, read_names, refuse_duplicates
from metadb.imports.commit import import_files
from metadb.imports.duplicates import drop_duplicates
from metadb.imports.outcome_formats import OUTCOME_FORMATS, _read_mlflow
from metadb.imports.selection import parse_select, reselect


def _refuse_known_run_ids(con, pending: list[tuple[Path, Parsed]]) -> None:
    """A run id is one run: refuse ids repeated across the files of one import or already stored."""
    ids = [parsed.frame.select("run_id", "file_row", _file=pl.lit(str(path))) for path, parsed in pending
           if "run_id" in parsed.frame.columns]
    ids = pl.concat(ids).filter(pl.col("run_id").is_not_null()) if ids else None
    if ids is None or not ids.height:
        return
    refuse_duplicates(ids, ["run_id"], None, "run id")
    con.register("_incoming_run_ids", ids.select("run_id").to_arrow())
    try:
        hit = con.execute("""SELECT o.run_id, o.file FROM outcomes o SEMI JOIN _incoming_run_ids s
                             ON o.run_id = s.run_id LIMIT 1""").fetchone()
    finally:
        con.unregister("_incoming_run_ids")
    if hit:
        r = ids.filter(pl.col("run_id") == hit[0]).row(0, named=True)
        raise MetadbError(f"{at(None, r)}: run id {hit[0]} is already in the store (imported from {hit[1]})",
                          "each run is imported once; remove the repeated runs")


def check_outcomes(con, pending: list[tuple[Path, Parsed]]) -> None:
    _refuse_known_run_ids(con, pending)
    drop_duplicates(con, pending)


def finish_outcomes(con) -> list[str]:
    """Re-select over every stored run; name metrics whose direction nobody declared."""
    notes = reselect(con)
    unknown = [r[0] for r in con.execute("""SELECT m FROM (SELECT DISTINCT metric AS m FROM outcomes)
                                            WHERE metric_higher_is_better(m) IS NULL ORDER BY m""").fetchall()]
    if unknown:
        notes.append(f"{directions.undeclared(', '.join(unknown))}: best-source and rankings refuse it until "
                     f"it is declared ({directions.DECLARE.format(metric=unknown[0])})")
    return notes


def import_outcomes(db: str | Path | None, pattern: str, fmt: str = "long", metric: str | None = None,
                    select: str | None = None, architecture: str | None = None, protocol: str | None = None,
                    pretraining: str | None = None, origin: str = "import", catalog_names: bool = True,
                    names_file: str | Path | None = None) -> list[ImportResult]:
    """Import fine-tuning outcomes from every file matching `pattern`: all files or none.

    `metric` defaults to auc for matrix and folds files (the published tables are AUCs); mlflow
    needs it (the column to read); long files may carry a metric column instead. `select`
    (mlflow) stores the rule with every run; the selected run per (source, target, fold,
    architecture) is recomputed over all stored runs. Names are mapped through `names_file`
    (name,dataset rows), then catalog aliases unless `catalog_names` is False; the result's notes
    say what was mapped.
    """
    if fmt not in OUTCOME_FORMATS:
        raise MetadbError(f"--format {fmt!r}: expected one of {', '.join(OUTCOME_FORMATS)}")
    if metric is None and fmt in ("matrix", "folds"):
        metric = OUTCOME_DEFAULT_METRIC
    if metric is None and fmt == "mlflow":
        raise MetadbError("--format mlflow needs --metric, the logged metric that is the outcome (e.g. test_auc)")
    chosen = parse_select(select)
    if chosen and fmt != "mlflow":
        raise MetadbError(f"--select applies to --format mlflow, not {fmt}",
                          "other formats hold one ground-truth value per pair, fold or seed")
    naming = Naming(catalog_names, read_names(names_file) if names_file else {})

    def read(paths: list[Path]) -> list[Parsed]:
        if fmt == "mlflow":
            parsed_all = _read_mlflow(paths, metric, chosen)
        else:
            parsed_all = [OUTCOME_FORMATS[fmt](p, metric=metric) for p in paths]
        given = {k: v for k, v in (("architecture", architecture), ("protocol", protocol),
                                   ("pretraining", pretraining)) if v is not None}
        for parsed in parsed_all:
            labels = dict(given)
            if "protocol" not in parsed.frame.columns:
                labels.setdefault("protocol", "fine-tune")
            parsed.frame = parsed.frame.with_columns(**{k: pl.lit(v) for k, v in labels.items()})
        return parsed_all

    options = {"format": fmt, "metric": metric, "select": select, "architecture": architecture,
               "protocol": protocol, "pretraining": pretraining}
    if not catalog_names or naming.given:  # the default keeps the digests of earlier imports
        options["names"] = {"catalog": catalog_names, "given": naming.given}
    return import_files(db, pattern, "outcome", fmt, options, "outcomes", read, check=check_outcomes,
                        origin=origin, names=naming, finish=finish_outcomes)
