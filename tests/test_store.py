"""The store: migrations, version checks, read-only access, the writer lock, bad files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metadb import store
from metadb.errors import MetadbError, StoreInUseError


def test_fresh_store_applies_every_migration_in_order(db):
    con = store.connect(db)
    try:
        rows = con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert [v for v, _ in rows] == [v for v, _, _ in store.migrations()]
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert {"datasets", "classes", "images", "meta_features", "ingest_runs", "ingest_errors",
                "similarities"} <= tables
    finally:
        con.close()


def test_older_store_is_upgraded(db):
    first = store.migrations()[0]
    raw = duckdb.connect(db)
    raw.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    raw.execute(first[2].read_text())
    raw.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [first[0], first[1]])
    raw.execute("INSERT INTO datasets (name, n_images) VALUES ('kept', 3)")
    raw.close()
    con = store.connect(db)
    try:
        assert store.schema_version(con) == store.latest_version() > first[0]
        assert con.execute("SELECT n_images FROM datasets WHERE name = 'kept'").fetchone() == (3,)
    finally:
        con.close()


def test_newer_store_is_refused_in_one_line(db):
    store.connect(db).close()
    raw = duckdb.connect(db)
    raw.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    raw.close()
    for read_only in (False, True):
        with pytest.raises(MetadbError, match="schema version 999, newer than this metadb") as e:
            store.connect(db, read_only=read_only)
        assert "\n" not in str(e.value)


def test_read_only_needs_an_existing_store(tmp_path):
    with pytest.raises(MetadbError, match="no store at"):
        store.connect(tmp_path / "missing.duckdb", read_only=True)


def test_a_file_that_is_not_a_store_gets_a_one_line_error(tmp_path):
    bogus = tmp_path / "notes.duckdb"
    bogus.write_text("this is not a database\n" * 100)
    with pytest.raises(MetadbError) as e:
        store.connect(bogus)
    assert str(bogus) in str(e.value) and "\n" not in str(e.value)


def test_transaction_rolls_back_on_error(db):
    con = store.connect(db)
    try:
        with pytest.raises(RuntimeError):
            with store.transaction(con):
                con.execute("INSERT INTO datasets (name) VALUES ('half-written')")
                raise RuntimeError("boom")
        assert con.execute("SELECT count(*) FROM datasets").fetchone() == (0,)
    finally:
        con.close()


def test_second_writer_process_is_told_the_store_is_in_use(db):
    store.connect(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time, duckdb
            con = duckdb.connect({db!r})
            print("locked", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreInUseError, match=r"is in use by another metadb process \(PID \d+\)"):
            store.connect(db)
    finally:
        holder.communicate("", timeout=30)


def test_query_macros_are_persistent_and_commented(db):
    store.connect(db).close()
    raw = duckdb.connect(db, read_only=True)
    try:
        comment = raw.execute(
            "SELECT comment FROM duckdb_functions() WHERE function_name = 'overlap' AND NOT internal"
        ).fetchone()
        assert comment and comment[0].startswith("Which pairs of ingested datasets share images")
    finally:
        raw.close()


def test_read_only_handle_reads_only_the_store_and_its_own_folders(db, tmp_path):
    """The Python API's read path (store.connect(read_only=True)) is locked down like `metadb sql`."""
    store.connect(db).close()
    own = Path(f"{db}.embeddings")
    own.mkdir()
    pq.write_table(pa.table({"image_id": ["a", "b"], "x": [1.0, 2.0]}), own / "rows.parquet")
    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n1,2\n")
    con = store.connect(db, read_only=True)
    try:
        assert con.execute(f"SELECT sum(x) FROM read_parquet('{own}/*.parquet')").fetchone() == (3.0,)
        for statement in (f"SELECT * FROM read_csv('{outside}')", "SELECT * FROM glob('/root/*')",
                          f"COPY (SELECT 1) TO '{tmp_path}/out.csv'", f"ATTACH '{tmp_path}/o.duckdb'"):
            with pytest.raises(duckdb.PermissionException):
                con.execute(statement)
        with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()
    assert not (tmp_path / "out.csv").exists()
    con = store.connect(db, read_only=True, external_access=True)  # asked for on purpose
    try:
        assert con.execute(f"SELECT a FROM read_csv('{outside}')").fetchall() == [(1,)]
    finally:
        con.close()


def test_every_query_macro_runs_on_a_locked_down_handle(db, tmp_path):
    from conftest import write_imagefolder
    from metadb import api, queries

    api.ingest(db, path=write_imagefolder(tmp_path / "a", {"x": "brick", "y": "grass"}, n=2), name="a", workers=1)
    api.ingest(db, path=write_imagefolder(tmp_path / "b", {"x": "brick"}, n=2), name="b", workers=1)
    args = {"target": "a", "to": "a", "dataset": "a"}
    for q in queries.all_queries():
        if q.run is None:
            params = {p.name: args[p.name] for p in q.params if p.required}
            cols, _ = api.query(q.name, db, **params)
            assert cols == [c.name for c in q.columns], q.name
    assert api.query("overlap", db)[1] == [("a", "b", 2, 0.5, 1.0, 4)]  # matched within 4 bits


def test_second_writer_waits_for_the_lock_or_fails_in_one_line(db):
    store.connect(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time, duckdb
            con = duckdb.connect({db!r})
            print("locked", flush=True)
            sys.stdin.readline()
            time.sleep(1.0)
            con.close()
            print("released", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(StoreInUseError, match=r"in use by another metadb process \(PID \d+\), still after waiting 0.5 s") as e:
            store.connect(db, wait=0.5)
        assert 0.5 <= time.monotonic() - t0 < 5 and "\n" not in str(e.value)  # the whole wait, not less
        holder.stdin.write("go\n")
        holder.stdin.flush()
        con = store.connect(db, wait=30)  # the holder lets go after ~1 s
        con.close()
        assert holder.stdout.readline().strip() == "released"
    finally:
        holder.communicate("", timeout=30)
