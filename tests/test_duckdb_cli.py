"""The pinned DuckDB CLI binary opens a store the library wrote and runs the same query macros."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import duckdb

from conftest import write_imagefolder
from metadb import api


def _duckdb_cli() -> str:
    found = Path(sys.executable).parent / "duckdb"
    path = str(found) if found.exists() else shutil.which("duckdb")
    assert path, "the duckdb CLI (package duckdb-cli) is not installed"
    return path


def test_cli_and_library_are_pinned_to_one_version():
    out = subprocess.run([_duckdb_cli(), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == f"v{duckdb.__version__}" == f"v{version('duckdb-cli')}"


def test_duckdb_cli_reads_the_store_and_runs_query_macros(db, tmp_path):
    a = write_imagefolder(tmp_path / "a", {"x": "brick", "y": "grass"}, n=2)
    b = write_imagefolder(tmp_path / "b", {"x": "brick"}, n=2)
    api.ingest(db, path=a, name="a", workers=1)
    api.ingest(db, path=b, name="b", workers=1)
    run = subprocess.run(
        [_duckdb_cli(), "-readonly", "-csv", db, "-c",
         "SELECT name, n_images, n_classes FROM datasets ORDER BY name; SELECT * FROM overlap();"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "name,n_images,n_classes", "a,4,2", "b,2,1",
        "dataset_a,dataset_b,matched_pairs,share_a,share_b,max_distance", "a,b,2,0.5,1.0,4",
    ]
