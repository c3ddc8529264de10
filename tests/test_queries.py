"""Query modules: headers parsed, declared columns match DESCRIBE, same answers from CLI and SQL."""

from __future__ import annotations

import pytest

from conftest import write_imagefolder
from metadb import api, queries, store
from metadb.errors import MetadbError
from metadb.resources import sql_files

SAMPLE = {"VARCHAR": "'x'", "INTEGER": "1", "BIGINT": "1", "DOUBLE": "1.0", "BOOLEAN": "true"}


@pytest.mark.parametrize("path", sql_files("queries"), ids=lambda p: p.stem)
def test_declared_columns_match_the_macro(db, path):
    q = queries.parse_query(path.read_text(), str(path))
    assert path.stem == q.name, "a query file is named after its macro"
    con = store.connect(db)
    try:
        args = ", ".join(SAMPLE[p.type] for p in q.params if p.required)
        described = con.execute(f"DESCRIBE SELECT * FROM {q.name}({args})").fetchall()
        assert [(r[0], r[1]) for r in described] == [(c.name, c.type) for c in q.columns]
    finally:
        con.close()


def test_a_query_file_without_header_is_refused_with_a_template():
    with pytest.raises(MetadbError) as e:
        queries.parse_query("CREATE OR REPLACE MACRO q() AS TABLE SELECT 1", "queries/q.sql")
    assert "queries/q.sql: no header comment" in str(e.value)
    assert "CREATE OR REPLACE MACRO my_question(target, k := 10) AS TABLE" in str(e.value)


def test_overlap_finds_shared_images_and_their_share(db, tmp_path):
    a = write_imagefolder(tmp_path / "a", {"x": "brick", "y": "grass"}, n=4)
    b = write_imagefolder(tmp_path / "b", {"x": "brick", "z": "camera"}, n=4)  # shares the 4 brick patches
    for name, folder in (("a", a), ("b", b)):
        api.ingest(db, path=folder, name=name, workers=1)
    cols, rows = api.query("overlap", db)
    assert cols == ["dataset_a", "dataset_b", "matched_pairs", "share_a", "share_b", "max_distance"]
    assert rows == [("a", "b", 4, 0.5, 0.5, 4)]
    assert api.query("overlap", db, dataset="zzz")[1] == []


def test_read_only_handle_gets_temp_macros_when_the_store_has_stale_ones(db):
    con = store.connect(db)
    con.execute("DROP MACRO TABLE overlap")
    con.execute("UPDATE metadb_meta SET value = 'stale' WHERE key = 'queries_fingerprint'")
    con.close()
    cols, rows = api.query("overlap", db)  # read-only: installs TEMP macros, writes nothing
    assert rows == []
    import duckdb

    raw = duckdb.connect(db, read_only=True)
    try:
        assert raw.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = 'overlap'").fetchone() == (0,)
    finally:
        raw.close()


def test_unknown_query_parameter_is_refused(db):
    store.connect(db).close()
    with pytest.raises(MetadbError, match="query overlap has no parameter target; it takes dataset"):
        api.query("overlap", db, target="x")
