"""The wheel carries the SQL and the evidence packs: found from an installed wheel, not only a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from conftest import ROOT


def test_wheel_ships_schema_queries_and_extractors_and_finds_them_installed(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("metadb-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for sql in (ROOT / "schema").glob("*.sql"):
        assert f"metadb/_schema/{sql.name}" in names
    for sql in (ROOT / "queries").glob("*.sql"):
        assert f"metadb/_queries/{sql.name}" in names
    for py in (ROOT / "extractors").glob("*.py"):
        assert f"extractors/{py.name}" in names
    for pkg in [p for p in (ROOT / "metadb").rglob("__init__.py")]:
        rel = pkg.relative_to(ROOT).as_posix()
        assert rel in names, f"{rel} is missing from the wheel: add its package to pyproject.toml"
    packs = [p for p in (ROOT / "metadb" / "published" / "data").glob("*/*") if p.suffix in (".parquet", ".json")]
    assert len(packs) >= 2 + 2  # two manifests and their tables
    for f in packs:
        rel = f.relative_to(ROOT).as_posix()
        assert rel in names, f"{rel} (an evidence pack file) is missing from the wheel"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import metadb.resources as r; print(r.sql_dir('schema')); "
             "print(len(r.sql_files('schema')), len(r.sql_files('queries'))); "
             "import metadb.published as p; [k.check() for k in p.all_packs()]; "
             "print(*[f'{k.name} {k.folder}' for k in p.all_packs()], sep=chr(10)); "
             "from metadb import api; list(p.import_packs('fresh.duckdb', ['cats-scans'])); "
             "print(api.query('best_source', 'fresh.duckdb', target='chest')[1][0][:3])")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith(str(target))
    assert out[1] == f"{len(list((ROOT / 'schema').glob('*.sql')))} {len(list((ROOT / 'queries').glob('*.sql')))}"
    assert out[2:4] == [f"{name} {target / 'metadb' / 'published' / 'data' / name}"  # installed, checksums verified
                        for name in ("cats-scans", "juodelyte-2024")]
    assert out[4] == "(1, 'imagenet', 'outcome')"  # a fresh install answers best-source --target chest
