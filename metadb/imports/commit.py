"""Atomic commit: parse every file of an import, then insert all rows, stubs and import records in one
transaction, or nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import polars as pl
import pyarrow as pa

from metadb import catalog, store
from metadb.imports.cells import ImportResult, Naming, Parsed, digest, files, naming, now

Check = Callable[[Any, list[tuple[Path, Parsed]]], None]
Finish = Callable[[Any], list[str]]


def import_files(db: str | Path | None, pattern: str, kind: str, fmt: str, options: dict[str, Any], table: str,
                 read: Callable[[list[Path]], list[Parsed]], check: Check | None = None,
                 origin: str = "import", names: Naming | None = None,
                 finish: Finish | None = None) -> list[ImportResult]:
    """Parse every matching file not imported before, then commit them all in one transaction (or none).

    `read` gets the list of files to import and returns one Parsed per file, so a format can
    validate its files together (MLflow exports) or one by one (`per_file`). `origin` is stored
    on every row: 'import' for a user's file, 'published:<pack>@<version>' for an evidence pack.
    `check` runs inside the transaction before the insert and may drop rows (duplicates) or
    refuse; `finish` runs after it (re-selection) and returns notes. `names` maps dataset names
    (catalog aliases by default). The first imported file's result carries the import's notes:
    names mapped, stubs made, and what the readers noted. A store file this import created is
    removed again when the import fails, so a failed first import leaves nothing behind.
    """
    if origin != "import":  # keeps the digests of plain imports what they were before origins existed
        options = {**options, "origin": origin}
    names = names or Naming()
    paths = files(pattern)
    db_path = Path(db) if db is not None else store.default_path()
    created = not db_path.exists()
    token = naming.set(names)
    try:
        return _import(db, paths, kind, fmt, options, table, read, check, origin, names, finish)
    except BaseException:
        if created:
            for leftover in (db_path, db_path.with_name(db_path.name + ".wal")):
                leftover.unlink(missing_ok=True)
        raise
    finally:
        naming.reset(token)


def _import(db, paths: list[Path], kind: str, fmt: str, options: dict[str, Any], table: str,
            read: Callable[[list[Path]], list[Parsed]], check: Check | None, origin: str, names: Naming,
            finish: Finish | None) -> list[ImportResult]:
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
        notes: list[str] = []
        if pending:
            notes = insert_all(con, table, kind, fmt, pending, check, finish)
        notes = [n for n in [names.note()] if n] + notes
        for parsed in parsed_all:
            notes += [n for n in parsed.notes if n not in notes]
        for i, (path, _, parsed) in enumerate(pending):
            results[path] = ImportResult(str(path), kind, "imported", parsed.frame.height, parsed.skips,
                                         notes if i == 0 else [])
        return [results[p] for p in paths]
    finally:
        con.close()


def insert_all(con, table: str, kind: str, fmt: str, pending: list[tuple[Path, str, Parsed]],
               check: Check | None = None, finish: Finish | None = None) -> list[str]:
    """Check the rows against the store, stage them in Parquet and insert rows + stubs + import
    records in one transaction; returns notes (the stubs made, what `finish` said)."""
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    with tempfile.TemporaryDirectory(prefix="metadb-import-") as tmp, store.transaction(con):
        if check:
            check(con, [(path, parsed) for path, _, parsed in pending])
        frames = [parsed.frame for _, _, parsed in pending if parsed.frame.height]
        dataset_names: set[str] = set()
        # similarities' `source` is the file a distance came from, not a dataset
        named = ("dataset_a", "dataset_b") if table == "similarities" else ("source", "target")
        for f in frames:
            for c in named:
                if c in f.columns:
                    dataset_names.update(f[c].unique().to_list())
        if frames:
            staged = Path(tmp) / "rows.parquet"
            rows = pl.concat(frames, how="diagonal_relaxed")
            rows.select([c for c in columns if c in rows.columns]).write_parquet(staged)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet(?)", [str(staged)])
        notes = add_stubs(con, dataset_names)
        con.executemany("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?)",
                        [[sha, str(path), kind, fmt, parsed.frame.height, now()] for path, sha, parsed in pending])
        if finish:
            notes += finish(con)
    return notes


def catalog_entry(name: str) -> catalog.DatasetInfo | None:
    """The catalog's entry whose own name is `name` (an alias is not the dataset: `breast` is not BreastMNIST)."""
    if name not in catalog.catalog:
        return None
    info = catalog.get(name)
    return info if info.name == name else None


def add_stubs(con, dataset_names: set[str]) -> list[str]:
    """Datasets known only by name become flagged stubs, with catalog metadata when the catalog has the name."""
    have = {r[0] for r in con.execute("SELECT name FROM datasets").fetchall()}
    rows, described, bare = [], [], []
    for name in sorted(dataset_names - have):
        info = catalog_entry(name)
        (described if info else bare).append(name)
        rows.append([name, info.title if info else name, info and info.modality, info and info.anatomy,
                     info and info.domain, info and info.label_type, info and info.licence, info and info.url,
                     list(info.derived_from) if info else []])
    if rows:  # one INSERT from an Arrow table: executemany costs milliseconds per row
        cols = ["name", "title", "modality", "anatomy", "domain", "label_type", "licence", "source_url", "derived_from"]
        stubs = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)},
                         schema=pa.schema([(c, pa.list_(pa.string()) if c == "derived_from" else pa.string())
                                           for c in cols]))
        con.register("_incoming_stubs", stubs)
        try:
            con.execute(f"INSERT INTO datasets ({', '.join(cols)}, is_stub) SELECT *, true FROM _incoming_stubs")
        finally:
            con.unregister("_incoming_stubs")
    notes = []
    if described:
        notes.append(f"stubs (not in the store; catalog metadata): {', '.join(described)}")
    if bare:
        notes.append(f"stubs (not in the store, unknown to the catalog): {', '.join(bare)}")
    return notes
