"""Atomic commit: parse every file of an import, then insert all rows, stubs and import records in one
transaction, or nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import polars as pl

from metadb import catalog, store
from metadb.imports.cells import ImportResult, Parsed, digest, files, now

Check = Callable[[Any, list[tuple[Path, Parsed]], str | None], None]


def import_files(db: str | Path | None, pattern: str, kind: str, fmt: str, options: dict[str, Any], table: str,
                 read: Callable[[list[Path]], list[Parsed]], check: Check | None = None,
                 origin: str = "import") -> list[ImportResult]:
    """Parse every matching file not imported before, then commit them all in one transaction (or none).

    `read` gets the list of files to import and returns one Parsed per file, so a format can
    validate its files together (MLflow exports) or one by one (`per_file`). `origin` is stored
    on every row: 'import' for a user's file, 'published:<pack>@<version>' for an evidence pack.
    """
    if origin != "import":  # keeps the digests of plain imports what they were before origins existed
        options = {**options, "origin": origin}
    paths = files(pattern)
    con = store.connect(db)
    try:
        results: dict[Path, ImportResult] = {}
        pending: list = []
        seen: set[str] = set()
        for path in paths:
            sha = digest(path, options)
            if sha in seen or con.execute("SELECT 1 FROM imports WHERE sha256 = ?", [sha]).fetchone():
                results[path] = ImportResult(str(path), kind, "already imported")
                continue
            seen.add(sha)
            pending.append((path, sha))
        parsed_all = read([path for path, _ in pending]) if pending else []
        for parsed in parsed_all:
            parsed.frame = parsed.frame.with_columns(origin=pl.lit(origin))
        pending = [(path, sha, parsed) for (path, sha), parsed in zip(pending, parsed_all)]
        if pending:
            insert_all(con, table, kind, fmt, pending, check)
        for path, _, parsed in pending:
            results[path] = ImportResult(str(path), kind, "imported", parsed.frame.height, parsed.skips)
        return [results[p] for p in paths]
    finally:
        con.close()


def insert_all(con, table: str, kind: str, fmt: str, pending: list[tuple[Path, str, Parsed]],
               check: Check | None = None) -> None:
    """Stage the rows in Parquet, then check them against the store and insert rows + stubs + import
    records in one transaction."""
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    frames = [parsed.frame for _, _, parsed in pending if parsed.frame.height]
    dataset_names: set[str] = set()
    for f in frames:
        for c in ("source", "target", "dataset_a", "dataset_b"):
            if c in f.columns:
                dataset_names.update(f[c].unique().to_list())
    with tempfile.TemporaryDirectory(prefix="metadb-import-") as tmp:
        staged = Path(tmp) / "rows.parquet"
        if frames:
            rows = pl.concat(frames, how="diagonal_relaxed")
            rows.select([c for c in columns if c in rows.columns]).write_parquet(staged)
        with store.transaction(con):
            if check:
                check(con, [(path, parsed) for path, _, parsed in pending], str(staged) if frames else None)
            if frames:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [str(staged)])
            add_stubs(con, dataset_names)
            con.executemany("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?)",
                            [[sha, str(path), kind, fmt, parsed.frame.height, now()] for path, sha, parsed in pending])


def add_stubs(con, dataset_names: set[str]) -> None:
    """Datasets known only by name become flagged stubs, with catalog metadata when there is some."""
    have = {r[0] for r in con.execute("SELECT name FROM datasets").fetchall()}
    rows = []
    for name in sorted(dataset_names - have):
        info = catalog.get(name) if name in catalog.catalog else None
        rows.append([name, info.title if info else name, info and info.modality, info and info.anatomy,
                     info and info.domain, info and info.label_type, info and info.licence, info and info.url,
                     list(info.derived_from) if info else []])
    if rows:
        con.executemany("""INSERT INTO datasets (name, title, modality, anatomy, domain, label_type, licence,
                                                 source_url, derived_from, is_stub)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, true)""", rows)

