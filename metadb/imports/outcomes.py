"""Outcome formats: long, matrix, folds (cats-scans) and MLflow run exports, and `import_outcomes`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import polars as pl

from metadb.errors import MetadbError
from metadb.imports.cells import (BLANK, HYPERPARAMETERS, INDEX_COLUMNS, OUTCOME_DEFAULT_METRIC, Parsed, at,
                                  canonical, drop_blank, first, integers, json_objects, names, now, numbers, pair,
                                  read_csv, refuse_duplicates, require, first_column)
from metadb.imports.commit import import_files

def _provenance(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    return frame.with_columns(file=pl.lit(str(path)), imported_at=pl.lit(now()))


def _read_folds(path: Path, metric: str, **_: Any) -> Parsed:
    """cats-scans `auc_folds_means_std.csv`: source,target,fold_1..fold_k[,mean,std]; all-nan rows = not run."""
    df, blank = drop_blank(read_csv(path))
    expected = "expected source,target,fold_1..fold_k[,mean,std]"
    require(df, path, ["source", "target"], expected)
    folds = sorted((c for c in df.columns if c.startswith("fold_") and c[5:].isdigit()), key=lambda c: int(c[5:]))
    if not folds:
        raise MetadbError(f"{path}: no fold_1 .. fold_k columns", expected)
    df = df.with_columns(source=names(df, "source", path), target=names(df, "target", path))
    refuse_duplicates(df, ["source", "target"], path, "pair")
    values = pl.DataFrame({c: numbers(df, c, path, metric) for c in folds})
    n_missing = values.select(pl.sum_horizontal([pl.col(c).is_null() for c in folds])).to_series()
    partial = (n_missing > 0) & (n_missing < len(folds))
    if partial.any():
        r = first(df, partial)
        empty = [c for c in folds if values.filter(partial).row(0, named=True)[c] is None]
        raise MetadbError(f"{at(path, r)}: {pair(r)} has {', '.join(empty)} empty but other folds set",
                          "a pair has a value for every fold, or nan in all of them when it was not run")
    run = n_missing == 0
    wide = pl.concat([df.select("source", "target", "file_row"), values], how="horizontal").filter(run)
    long = wide.unpivot(index=["source", "target", "file_row"], on=folds, variable_name="fold", value_name="value")
    frame = long.with_columns(pl.col("fold").str.slice(5).cast(pl.Int32), metric=pl.lit(metric),
                              is_selected=pl.lit(True)).sort("file_row", "fold")
    return Parsed(_provenance(frame, path), {"pairs not run (all folds nan)": int((~run).sum()), BLANK: blank})


def _matrix_cells(path: Path, metric: str | None, value_name: str = "value") -> tuple[pl.DataFrame, dict[str, int]]:
    """(source, target, value, file_row) for each filled cell of a source x target matrix CSV.

    The Juodelyte files have a leading unnamed index column and a `source` column; empty cells
    are the self pairs. A square distance matrix may name its row column `dataset` instead.
    """
    df, blank = drop_blank(read_csv(path))
    row_col = next((c for c in ("source", "dataset", "name", "model") if c in df.columns), None)
    if row_col is None:
        raise MetadbError(f"{path}: no source column",
                          "expected a `source` column naming each row, then one column per target")
    targets = [c for c in df.columns if c not in (row_col, "file_row") and c not in INDEX_COLUMNS
               and not c.startswith("Unnamed")]
    if not targets:
        raise MetadbError(f"{path}: no target columns besides {row_col}", "one column per target dataset is expected")
    df = df.with_columns(names(df, row_col, path).alias("source"))
    refuse_duplicates(df, ["source"], path, "source")
    values = pl.DataFrame({canonical(t): numbers(df, t, path, metric) for t in targets})
    if values.width < len(targets):
        raise MetadbError(f"{path}: two target columns name the same dataset ({', '.join(targets)})")
    wide = pl.concat([df.select("source", "file_row"), values], how="horizontal")
    long = wide.unpivot(index=["source", "file_row"], variable_name="target", value_name=value_name)
    filled = long.filter(pl.col(value_name).is_not_null()).sort("file_row", maintain_order=True)
    return filled, {"empty cells": long.height - filled.height, BLANK: blank}


def _read_matrix(path: Path, metric: str, **_: Any) -> Parsed:
    cells, skips = _matrix_cells(path, metric)
    frame = cells.with_columns(metric=pl.lit(metric), is_selected=pl.lit(True))
    skips["empty cells (self pairs or not run)"] = skips.pop("empty cells")
    return Parsed(_provenance(frame, path), skips)


def _read_long(path: Path, metric: str | None, **_: Any) -> Parsed:
    """source,target,value[,metric,fold,seed,run_id,status,architecture,pretraining,protocol,hyperparameters]."""
    df, blank = drop_blank(read_csv(path))
    require(df, path, ["source", "target", "value"] + ([] if metric else ["metric"]),
            "expected source,target,value[,metric,fold,seed,run_id,...] (or pass --metric)")
    df = df.with_columns(source=names(df, "source", path), target=names(df, "target", path))
    metrics = (df["metric"].str.strip_chars().fill_null(metric or "") if "metric" in df.columns
               else pl.Series([metric] * df.height))
    if (metrics == "").any():
        r = first(df, metrics == "")
        raise MetadbError(f"{at(path, r)}: empty metric", "fill the metric column or pass --metric")
    frame = df.select("source", "target", "file_row").with_columns(
        metric=metrics, value=numbers(df, "value", path, metrics, required=True), is_selected=pl.lit(True))
    extra = {c: integers(df, c, path).cast(pl.Int32) for c in ("fold", "seed") if c in df.columns}
    extra.update({c: df[c] for c in ("architecture", "pretraining", "protocol", "run_id", "status", "hyperparameters")
                  if c in df.columns})
    if "hyperparameters" in extra:
        json_objects(df, "hyperparameters", path)
    if "run_id" in extra:
        refuse_duplicates(df.with_columns(run_id=extra["run_id"]).filter(pl.col("run_id").is_not_null()),
                          ["run_id"], path, "run id")
    return Parsed(_provenance(frame.with_columns(**extra), path), {BLANK: blank})


def parse_select(select: str | None) -> tuple[str, str] | None:
    if select is None:
        return None
    how, _, column = select.partition(":")
    if how not in ("min", "max") or not column:
        raise MetadbError(f"--select {select!r}: expected min:COLUMN or max:COLUMN, e.g. min:val_loss")
    return how, column


def _hyperparameters(df: pl.DataFrame, exclude: set[str]) -> pl.Series | None:
    """The run's configuration as a JSON object; numbers stay numbers (`{"lr":0.001,"batch_size":256}`)."""
    cols = [c for c in df.columns if (c in HYPERPARAMETERS or c.startswith("params.")) and c not in exclude
            and c not in ("params.source_flag", "params.target_flag")]
    if not cols:
        return None
    raw = {c: pl.col(c).str.strip_chars() for c in cols}
    given = {c: raw[c].is_not_null() & (raw[c] != "") for c in cols}
    kinds = df.select(
        [(raw[c].cast(pl.Int64, strict=False).is_not_null() == given[c]).all().alias(f"{c}\0int") for c in cols]
        + [(raw[c].cast(pl.Float64, strict=False).is_not_null() == given[c]).all().alias(f"{c}\0float") for c in cols]
    ).row(0, named=True)
    typed = [(raw[c].cast(pl.Int64, strict=False) if kinds[f"{c}\0int"] else
              raw[c].cast(pl.Float64, strict=False) if kinds[f"{c}\0float"] else raw[c])
             .alias(c.removeprefix("params.")) for c in cols]
    return df.select(pl.struct(typed).struct.json_encode()).to_series()


def _mlflow_frame(path: Path, metric: str, select: tuple[str, str] | None) -> pl.DataFrame:
    """One export's columns under standard names (`Run ID` or `run_id`, `source_flag` or `params.source_flag`, ...)."""
    used = {"Run ID", "run_id", "Status", "status", "source_flag", "params.source_flag", "source", "target_flag",
            "params.target_flag", "target", metric, f"metrics.{metric}", "seed"}
    if select:
        used |= {select[1], f"metrics.{select[1]}"}
    df = read_csv(path, wanted=lambda c: c in used or c in HYPERPARAMETERS or c.startswith("params."))
    found = {"_run": first_column(df, "Run ID", "run_id"),
             "_source": first_column(df, "source_flag", "params.source_flag", "source"),
             "_target": first_column(df, "target_flag", "params.target_flag", "target"),
             "_value": first_column(df, metric, f"metrics.{metric}")}
    shown = {"_run": "Run ID", "_source": "source_flag", "_target": "target_flag", "_value": metric}
    require(df, path, [shown[k] for k, c in found.items() if c is None],
            "expected an MLflow run export (Run ID, source_flag, target_flag and the --metric column)")
    if select:
        found["_key"] = first_column(df, select[1], f"metrics.{select[1]}")
        if found["_key"] is None:
            raise MetadbError(f"{path}: no column {select[1]} for --select {select[0]}:{select[1]}",
                              "name a logged metric, e.g. min:val_loss or max:val_auc")
    found["_status"] = first_column(df, "Status", "status")
    renamed = df.select([pl.col(c).alias(k) for k, c in found.items() if c is not None]
                        + [pl.col(c) for c in df.columns if c not in found.values()])
    return renamed.with_columns(_file=pl.lit(str(path)))


def _read_mlflow(paths: list[Path], metric: str, select: tuple[str, str] | None = None) -> list[Parsed]:
    """MLflow run exports, validated together: every run is kept; `select` marks each pair's ground truth.

    The files of one import are checked as one frame (a few polars passes for 20k runs, not a
    few per file); run ids must be unique across them. The selected run of a (source, target)
    is chosen among the runs of this import. Blank lines and runs that logged no value for
    `metric` are counted skips; a failed or killed run is never the selected one.
    """
    df = pl.concat([_mlflow_frame(p, metric, select) for p in paths], how="diagonal")
    data_cols = [c for c in df.columns if c not in ("file_row", "_file")]
    blank = df.select(pl.all_horizontal([pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")
                                         for c in data_cols])).to_series()
    blank_lines = dict(df.filter(blank).group_by("_file").len().iter_rows())
    df = df.filter(~blank).with_columns(run_id=pl.col("_run").str.strip_chars())
    no_id = df["run_id"].is_null() | (df["run_id"] == "")
    if no_id.any():
        raise MetadbError(f"{at(None, first(df, no_id))}: no run id", "every MLflow run has an id")
    refuse_duplicates(df, ["run_id"], None, "run id")
    hyperparameters = _hyperparameters(df, set())
    frame = df.select("run_id", "file_row", "_file").with_columns(
        hyperparameters=hyperparameters if hyperparameters is not None else pl.lit(None, pl.Utf8),
        source=names(df, "_source", None), target=names(df, "_target", None), metric=pl.lit(metric),
        value=numbers(df, "_value", None, metric),
        status=df["_status"] if "_status" in df.columns else pl.lit(None, pl.Utf8),
        _key=numbers(df, "_key", None, select[1]) if select else pl.lit(None, pl.Float64),
        seed=integers(df, "seed", None).cast(pl.Int32) if "seed" in df.columns else pl.lit(None, pl.Int32),
    )
    no_value = frame["value"].is_null()
    without = dict(frame.filter(no_value).group_by("_file").len().iter_rows())
    frame = frame.filter(~no_value)
    frame = frame.with_columns(is_selected=_selected(frame, select), imported_at=pl.lit(now())).drop("_key")
    parts = {file: part for (file,), part in frame.partition_by("_file", as_dict=True).items()}
    return [Parsed(parts.get(str(p), frame.clear()).rename({"_file": "file"}),
                   {f"runs without {metric}": without.get(str(p), 0), BLANK: blank_lines.get(str(p), 0)})
            for p in paths]


def _selected(frame: pl.DataFrame, select: tuple[str, str] | None) -> pl.Series:
    """Per (source, target), True for the finished run with the min/max of the selection column (first on ties)."""
    if select is None:
        return pl.Series([True] * frame.height)
    finished = pl.col("status").is_null() | (pl.col("status").str.to_uppercase() == "FINISHED")
    eligible = frame.with_row_index("_i").filter(pl.col("_key").is_not_null() & finished)
    best = (eligible.sort(["_key", "_i"], descending=[select[0] == "max", False])
            .group_by("source", "target").agg(pl.col("_i").first())["_i"])
    return frame.with_row_index("_i").select(pl.col("_i").is_in(best.implode()))["_i"].alias("is_selected")


OUTCOME_FORMATS: dict[str, Callable[..., Any]] = {
    "long": _read_long,
    "matrix": _read_matrix,
    "folds": _read_folds,
    "mlflow": _read_mlflow,  # reads all files of the import together
}


def _refuse_known_run_ids(con, pending: list[tuple[Path, Parsed]], staged: str | None) -> None:
    """A run id is one run: refuse ids repeated across the files of one import or already stored."""
    ids = [parsed.frame.select("run_id", "file_row", _file=pl.lit(str(path))) for path, parsed in pending
           if "run_id" in parsed.frame.columns]
    if not ids or staged is None:
        return
    ids = pl.concat(ids).filter(pl.col("run_id").is_not_null())
    refuse_duplicates(ids, ["run_id"], None, "run id")
    hit = con.execute("""SELECT o.run_id, o.file FROM outcomes o SEMI JOIN read_parquet(?) s ON o.run_id = s.run_id
                         LIMIT 1""", [staged]).fetchone()
    if hit:
        r = ids.filter(pl.col("run_id") == hit[0]).row(0, named=True)
        raise MetadbError(f"{at(None, r)}: run id {hit[0]} is already in the store (imported from {hit[1]})",
                          "each run is imported once; remove the repeated runs")


def import_outcomes(db: str | Path | None, pattern: str, fmt: str = "long", metric: str | None = None,
                    select: str | None = None, architecture: str | None = None, protocol: str | None = None,
                    pretraining: str | None = None, origin: str = "import") -> list[ImportResult]:
    """Import fine-tuning outcomes from every file matching `pattern`: all files or none.

    `metric` defaults to auc for matrix and folds files (the published tables are AUCs); mlflow
    needs it (the column to read); long files may carry a metric column instead.
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
    return import_files(db, pattern, "outcome", fmt, options, "outcomes", read, check=_refuse_known_run_ids,
                        origin=origin)

