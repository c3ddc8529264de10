"""Scale-out through the executor seam, on a real `distributed.LocalCluster` (2 worker processes).

Data are the real scikit-learn digits written as PNG files in the imagefolder layout. Dask and the
local pool must give the same store; a killed driver resumes from its manifest of finished shards;
a killed worker's trial is retried by Dask; bad executors and unreachable schedulers are one line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest

from conftest import ROOT
from metadb import api
from metadb.errors import MetadbError

distributed = pytest.importorskip("distributed")  # in the `test` extra; the skip only guards a bare install


@pytest.fixture(scope="module")
def dask_executor():
    from metadb.executors import DaskExecutor

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=40)
    client = distributed.Client(cluster, set_as_default=False)
    ex = DaskExecutor(client, None, "test-local-cluster")
    yield ex
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> Path:
    """The first 600 real 8x8 digits (classes 0-9) upscaled to 16x16 PNGs: 3 shards of ingest."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("cluster") / "digits"
    d = load_digits()
    for k in range(600):
        folder = root / f"d{d.target[k]}"
        folder.mkdir(parents=True, exist_ok=True)
        img = np.kron(d.images[k] * 15, np.ones((2, 2))).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{k:04d}.png")
    return root


def store_rows(db: str) -> dict[str, list[tuple]]:
    con = duckdb.connect(db, read_only=True)
    try:
        out = {t: con.execute(f"SELECT * EXCLUDE ({drop}) FROM {t} ORDER BY ALL").fetchall()
               for t, drop in (("images", "dataset"), ("classes", "dataset"))}
        out["features"] = con.execute("SELECT extractor, name, value FROM meta_features ORDER BY extractor, name").fetchall()
        out["n"] = con.execute("SELECT n_images, n_classes, fingerprint FROM datasets").fetchall()
        return out
    finally:
        con.close()


def assert_same_store(a: dict, b: dict) -> None:
    assert a["images"] == b["images"] and a["classes"] == b["classes"] and a["n"] == b["n"]
    assert [r[:2] for r in a["features"]] == [r[:2] for r in b["features"]]
    va, vb = (np.array([r[2] for r in x["features"]], dtype=float) for x in (a, b))
    np.testing.assert_allclose(vb, va, rtol=1e-12, atol=0)


def test_ingest_on_dask_gives_the_store_of_the_single_process_run(dask_executor, digits_folder, tmp_path):
    one = str(tmp_path / "one.duckdb")
    r1 = api.ingest(one, path=digits_folder, name="digits", workers=1)
    r2 = api.ingest(str(tmp_path / "dask.duckdb"), path=digits_folder, name="digits", executor=dask_executor)
    assert (r1.images_ok, r2.images_ok) == (600, 600)
    assert r2.workers == 2 and "images/s; 2 workers, test-local-cluster" in r2.summary()
    a, b = store_rows(one), store_rows(str(tmp_path / "dask.duckdb"))
    assert len(a["images"]) == 600 and sum(c for _, c in a["classes"]) == 600
    assert_same_store(a, b)
    assert not Path(f"{tmp_path}/dask.duckdb.staging").exists()


def test_cli_ingest_through_a_scheduler_address_prints_workers_and_rate(dask_executor, digits_folder, tmp_path):
    from click.testing import CliRunner

    from metadb.cli import cli

    address = dask_executor.client.scheduler.address  # tcp://127.0.0.1:PORT
    r = CliRunner().invoke(cli, ["ingest", "--path", str(digits_folder), "--name", "digits", "--db",
                                 str(tmp_path / "s.duckdb"), "--executor", "dask://" + address.split("://")[1]])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("digits: 600 images ingested in ")
    assert f"images/s; 2 workers, dask {address})" in r.output


def test_embed_on_dask_gives_the_stats_and_vectors_of_the_single_process_run(dask_executor, digits_folder, tmp_path):
    import pyarrow.parquet as pq

    from metadb.embeddings import embed, from_npy

    small = tmp_path / "small"
    for cls in ("d0", "d1", "d2"):
        shutil.copytree(digits_folder / cls, small / cls)
    dbs = [str(tmp_path / f"{k}.duckdb") for k in ("one", "dask")]
    for db in dbs:
        api.ingest(db, path=small, name="small", workers=1)
    n = api.sql("SELECT n_images FROM datasets", dbs[0])[1][0][0]
    assert n > 64  # more than one shard of 8 batches of 8
    embed(dbs[0], "small", "test_resnet", random_init=True, batch_size=8, progress=False)
    embed(dbs[1], "small", "test_resnet", random_init=True, batch_size=8, progress=False, executor=dask_executor)
    q = "SELECT label, n, mean, eigvals FROM embedding_stats ORDER BY label"
    a, b = (duckdb.connect(db, read_only=True).execute(q).fetchall() for db in dbs)
    assert [(r[0], r[1]) for r in a] == [(r[0], r[1]) for r in b] and a[0][1] == n
    for ra, rb in zip(a, b):
        np.testing.assert_allclose(from_npy(rb[2]), from_npy(ra[2]), rtol=1e-12, atol=1e-12 * np.abs(from_npy(ra[2])).max())
        vals = from_npy(ra[3])
        np.testing.assert_allclose(from_npy(rb[3]), vals, rtol=0, atol=1e-12 * vals.max())
    paths = [duckdb.connect(db, read_only=True).execute("SELECT per_image_path FROM embedding_runs").fetchone()[0]
             for db in dbs]
    ta, tb = (pq.read_table(p) for p in paths)
    assert ta.num_rows == n and ta.equals(tb)  # every vector bit for bit: the batches are the same


class StopAfter:
    """An executor that hands back `n` results from a real pool, then raises as a killed driver would."""

    def __init__(self, n: int, exc: BaseException):
        from metadb.executors import LocalPool

        self.pool, self.n, self.exc, self.submitted = LocalPool(1), n, exc, []
        self.name, self.workers = "stop-after", 1

    def run(self, fn, items, resources=None):
        self.submitted.append([t.index for t in items])
        for k, (i, res) in enumerate(self.pool.run(fn, items)):
            if k == self.n:
                raise self.exc
            yield i, res

    def close(self):
        pass


def test_an_interrupted_ingest_keeps_its_shard_manifest_and_resumes_only_the_missing_shards(digits_folder, tmp_path):
    import json

    db = str(tmp_path / "r.duckdb")
    stop = StopAfter(2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        api.ingest(db, path=digits_folder, name="digits", executor=stop)
    assert api.sql("SELECT count(*) FROM datasets", db)[1] == [(0,)]  # nothing committed
    (folder,) = Path(f"{db}.staging").iterdir()
    manifest = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [(m["shard"], m["lo"], m["hi"], m["rows"]) for m in manifest] == [(0, 0, 200, 200), (1, 200, 400, 400 - 200)]
    assert sorted(p.name for p in folder.glob("part-*.parquet"))[:2] == ["part-000000.parquet", "part-000001.parquet"]
    again = StopAfter(99, RuntimeError("unused"))
    r = api.ingest(db, path=digits_folder, name="digits", executor=again)
    assert again.submitted == [[2]] and r.resumed == 2 and "2 shards resumed" in r.summary()
    one = str(tmp_path / "one.duckdb")
    api.ingest(one, path=digits_folder, name="digits", workers=1)
    assert_same_store(store_rows(one), store_rows(db))
    assert not Path(f"{db}.staging").exists()


KILL_AFTER_TWO = textwrap.dedent("""
    import os, signal, sys
    from metadb import api
    from metadb.executors import LocalPool

    class KillSelf(LocalPool):
        def run(self, fn, items, resources=None):
            for k, out in enumerate(super().run(fn, items)):
                if k == 2:  # two shards are in the manifest: kill -9 of the driver
                    os.kill(os.getpid(), signal.SIGKILL)
                yield out

    api.ingest(sys.argv[1], path=sys.argv[2], name="digits", executor=KillSelf(1))
""")


def test_kill_9_of_the_driver_then_the_same_command_recomputes_only_missing_shards(digits_folder, tmp_path):
    db = str(tmp_path / "k.duckdb")
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_TWO, db, str(digits_folder)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert api.sql("SELECT count(*) FROM images", db)[1] == [(0,)]
    r = api.ingest(db, path=digits_folder, name="digits", workers=1)
    assert (r.images_ok, r.resumed) == (600, 2)
    one = str(tmp_path / "one.duckdb")
    api.ingest(one, path=digits_folder, name="digits", workers=1)
    assert_same_store(store_rows(one), store_rows(db))


def test_a_shard_that_keeps_failing_is_one_line_with_its_range_and_nothing_is_committed(digits_folder, tmp_path):
    from metadb import ingest as ingest_module

    class FailThird(StopAfter):
        def run(self, fn, items, resources=None):
            from metadb.executors import TaskFailed

            for k, out in enumerate(self.pool.run(fn, items)):
                if k == 2:
                    raise TaskFailed(k, OSError("Input/output error"), 3)
                yield out

    db = str(tmp_path / "f.duckdb")
    with pytest.raises(MetadbError) as e:
        ingest_module.ingest(db, path=digits_folder, name="digits", executor=FailThird(0, RuntimeError()))
    msg = str(e.value)
    assert msg.startswith("shard 2 (images 400-599 of 600, first d") and "failed after 3 attempt(s): OSError" in msg
    assert "\n" not in msg and "nothing was committed" in msg
    assert api.sql("SELECT count(*) FROM datasets", db)[1] == [(0,)]


def test_a_worker_that_cannot_open_the_data_root_says_so_in_one_line(dask_executor, digits_folder, tmp_path):
    from dataclasses import replace

    from metadb import ingest as I
    from metadb.loaders import create_loader

    info, folder = I.resolve(None, digits_folder, "digits", None, None, None)
    exts = I._extractors(I.DEFAULT_EXTRACTORS, 64)
    tasks = I.plan_shards(info, folder, create_loader(info.layout, folder), exts, 64)
    gone = [replace(t, root=str(tmp_path / "not-mounted"), part=str(tmp_path / f"p{t.index}.parquet")) for t in tasks]
    with pytest.raises(MetadbError, match=r"^worker on \S+ cannot open the data root .*not-mounted; every worker "
                                          r"must see the data at the same path"):
        list(dask_executor.run(I.ingest_shard, gone))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_and_bad_executor_are_one_line(runner, digits_folder, db):
    from metadb.cli import cli

    port = _free_port()
    r = runner.invoke(cli, ["ingest", "--path", str(digits_folder), "--db", db, "--executor", f"dask://127.0.0.1:{port}"])
    assert r.exit_code == 1
    assert r.output == (f"Error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port} (OSError); start one "
                        "(`dask scheduler`, `metadb cluster slurm`) or check --executor / $METADB_SCHEDULER\n")
    r = runner.invoke(cli, ["ingest", "--path", str(digits_folder), "--db", db], env={"METADB_SCHEDULER": "spark://x"})
    assert r.output == ("Error: --executor 'spark://x' is not an executor; use local, local-cluster:N or "
                        "dask://host:port (or set $METADB_SCHEDULER)\n")
    assert not Path(db).exists() or api.sql("SELECT count(*) FROM datasets", db)[1] == [(0,)]
    assert not Path(f"{db}.staging").exists()  # the executor is checked before any staging is made


def test_without_dask_a_dask_executor_names_the_extra(digits_folder, db):
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from metadb.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code, "ingest", "--path", str(digits_folder), "--db", db,
                        "--executor", "local-cluster:2"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("Error: Dask is not installed (needed for --executor dask:// and local-cluster:N); "
                        "pip install 'metadb[cluster]'\n")


def test_local_cluster_workers_run_without_the_profiler_and_with_a_slow_tick():
    from metadb.executors import create_executor

    ex = create_executor("local-cluster:1")
    try:
        def settings(dask_worker):
            import dask

            return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), sorted(dask_worker.periodic_callbacks),
                    dask_worker._tick_interval, dask.config.get("distributed.worker.profile.enabled"))

        (trim, callbacks, tick, profile), = ex.client.run(settings).values()
    finally:
        ex.close()
    assert profile is False and tick == 1.0
    # Dask's MALLOC_TRIM_THRESHOLD_ is not added; the driver's own environment is inherited as it is
    # (a default nanny started earlier in this process, like the module's fixture, leaves it there)
    assert trim == os.environ.get("MALLOC_TRIM_THRESHOLD_")
    assert "profile" not in callbacks and "profile-cycle" not in callbacks
    assert "tick" in callbacks and "memory_monitor" in callbacks  # slowed and kept, not removed


def test_worker_environ_is_what_dask_reads_at_start_up():
    from metadb.executors import WORKER_CONFIG, worker_environ

    code = f"import dask; print([dask.config.get(k) for k in {list(WORKER_CONFIG)!r}])"
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, **worker_environ()}, capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == str(list(WORKER_CONFIG.values()))


def test_slurm_job_script_asks_for_gpus_time_and_declares_the_gpu_resource(runner):
    from metadb.cli import cli

    r = runner.invoke(cli, ["cluster", "slurm", "--jobs", "16", "--gpus-per-job", "1", "--walltime", "12:00:00",
                            "--cores", "4", "--memory", "16GB", "--queue", "gpu", "--print-script"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in ("#SBATCH -p gpu", "#SBATCH --cpus-per-task=4", "#SBATCH -t 12:00:00", "#SBATCH --gres=gpu:1"):
        assert directive in lines, (directive, lines)
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in lines
    worker = lines[-1]
    assert "distributed.cli.dask_worker tcp://" in worker and ":8786" in worker
    assert "--resources GPU=1" in worker and "--nthreads 4" in worker
    r = runner.invoke(cli, ["cluster", "slurm", "--walltime", "12h", "--print-script"])
    assert r.output == "Error: --walltime '12h' is not a Slurm time; use HH:MM:SS or D-HH:MM:SS, e.g. 12:00:00\n"
    if shutil.which("sbatch") is None:
        r = runner.invoke(cli, ["cluster", "slurm", "--jobs", "2"])
        assert r.output.startswith("Error: sbatch not found: this machine is not a Slurm login node")


# --- fine-tuning grids --------------------------------------------------------------------------
from test_finetune import TINY, digits_store  # noqa: E402,F401  (the 3-vs-8 digits target store, module-scoped)

GRID = ["finetune", "--target", "digits", "--sources", "random", "--protocol", "cats-scans", *TINY,
        "--epochs", "1", "--folds", "2", "--grid", "lr=1e-3,1e-2", "--quiet"]


@pytest.fixture
def ft_db(digits_store, tmp_path) -> str:
    path = tmp_path / "ft.duckdb"
    shutil.copy(digits_store, path)
    return str(path)


def test_a_grid_completes_on_dask_when_a_worker_is_killed_mid_trial(dask_executor, ft_db):
    from metadb.finetune import runner
    from metadb.finetune.protocol import parse_overrides

    client = dask_executor.client
    killed: list[int] = []

    def kill_a_busy_worker(spec, rec):
        if killed:
            return
        pids = client.run(os.getpid)
        busy = [addr for addr, keys in client.processing().items() if keys]
        assert busy, "no trial was running when the first one finished"
        killed.append(pids[busy[0]])
        os.kill(pids[busy[0]], signal.SIGKILL)

    overrides, grid = parse_overrides(GRID[GRID.index("--architecture"):-1])
    summary = runner.finetune(ft_db, "digits", ["random"], "cats-scans", overrides, grid, "cpu", None, False,
                              on_record=kill_a_busy_worker, executor=dask_executor)
    assert killed and summary.line() == "4 trials: 4 run, 0 already stored"
    assert api.sql("SELECT count(*), count(DISTINCT run_id), count(*) FILTER (WHERE status = 'finished') FROM runs",
                   ft_db)[1] == [(4, 4, 4)]
    assert api.sql("SELECT count(*) FROM outcomes WHERE origin = 'run'", ft_db)[1] == [(4,)]


def test_kill_9_of_the_driver_mid_grid_on_a_local_cluster_then_rerun_finishes(ft_db, runner):
    from metadb.cli import cli

    args = [*GRID, "--db", ft_db, "--executor", "local-cluster:2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-u", "-c", "from metadb.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    first = proc.stdout.readline()  # printed after the first trial committed
    proc.kill()
    proc.wait()
    assert " random -> digits fold " in first, first
    done = api.sql("SELECT count(*) FROM runs", ft_db)[1][0][0]
    assert 1 <= done < 4
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-1] == f"4 trials: {4 - done} run, {done} already stored"
    assert api.sql("SELECT count(*), count(DISTINCT run_id) FROM runs", ft_db)[1] == [(4, 4)]


def test_loader_shards_are_contiguous_near_equal_and_cover_the_dataset_once(digits_folder):
    from metadb.loaders import create_loader

    loader = create_loader("imagefolder", digits_folder)
    whole = [r.image_id for r in loader.records()]
    shards = [[r.image_id for r in loader.shard(i, 7).records()] for i in range(7)]
    assert sum(shards, []) == whole and len(whole) == 600
    assert {len(s) for s in shards} == {85, 86}  # 600 = 5 x 86 + 2 x 85
    with pytest.raises(MetadbError, match="shard 7 of 7 does not exist"):
        loader.shard(7, 7)
