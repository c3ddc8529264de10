"""Distances between datasets supplied by the user (expert judgement, published Task2Vec, ...)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from metadb.errors import MetadbError
from metadb.imports.cells import BLANK, Parsed, first_column, at, drop_blank, first, names, now, numbers, read_csv, require
from metadb.imports.cells import ImportResult, per_file
from metadb.imports.commit import import_files
from metadb.imports.outcome_formats import _matrix_cells

def _read_distances(path: Path, measure: str, fmt: str) -> Parsed:
    """`long`: target;source;distance (experts_clean.csv) or a,b,distance; `matrix`: a square CSV;
    `cats-scans`: aucs_scores_distances_experts.csv, whose per-fold distance_1..k are averaged."""
    if fmt == "matrix":
        cells, skips = _matrix_cells(path, None)
        frame = cells.rename({"source": "dataset_a", "target": "dataset_b"})
    elif fmt == "cats-scans":
        df, blank = drop_blank(read_csv(path))
        require(df, path, ["source", "target"], "expected the cats-scans aucs_scores_distances_experts.csv")
        cols = sorted((c for c in df.columns if c.startswith("distance_") and c[9:].isdigit()),
                      key=lambda c: int(c[9:]))
        if not cols:
            raise MetadbError(f"{path}: no distance_1 .. distance_k columns",
                              "--format cats-scans reads per-fold Task2Vec distances")
        per_fold = pl.DataFrame([numbers(df, c, path, required=True) for c in cols])
        frame = df.select("file_row").with_columns(dataset_a=names(df, "target", path),
                                                   dataset_b=names(df, "source", path),
                                                   value=per_fold.mean_horizontal())
        skips = {BLANK: blank}
    else:
        df, blank = drop_blank(read_csv(path))
        a, b = next(((x, y) for x, y in (("target", "source"), ("dataset_a", "dataset_b"), ("a", "b"))
                     if x in df.columns and y in df.columns), ("target", "source"))
        v = first_column(df, "distance", "value")
        require(df, path, [a, b, v or "distance"], "expected target;source;distance or a,b,distance")
        frame = df.select("file_row").with_columns(dataset_a=names(df, a, path), dataset_b=names(df, b, path),
                                                   value=numbers(df, v, path, required=True))
        skips = {BLANK: blank}
    negative = frame["value"] < 0
    if negative.any():
        r = first(frame, negative)
        raise MetadbError(f"{at(path, r)}: distance {r['value']} between {r['dataset_a']} and "
                          f"{r['dataset_b']} is negative", "metadb stores distances (lower = more alike); convert "
                          "similarities first, e.g. 1 - similarity")
    frame = frame.with_columns(measure=pl.lit(measure), backbone=pl.lit(""), measure_version=pl.lit("imported"),
                               params=pl.lit(json.dumps({"format": fmt})), source=pl.lit(str(path)),
                               computed_at=pl.lit(now()))
    return Parsed(frame.drop("file_row"), skips)


def import_similarities(db: str | Path | None, pattern: str, measure: str, fmt: str = "long",
                        origin: str = "import") -> list[ImportResult]:
    """User-supplied distances (expert judgement, published Task2Vec, ...) as a named measure."""
    if fmt not in ("long", "matrix", "cats-scans"):
        raise MetadbError(f"--format {fmt!r}: expected long, matrix or cats-scans")
    return import_files(db, pattern, "distance", fmt, {"measure": measure, "format": fmt}, "similarities",
                        per_file(lambda path: _read_distances(path, measure, fmt)), origin=origin)

