"""`metadb score` on the executor seam: one task per model, the store closed while tasks run.

A real target (24 patches of scikit-image's brick and cell textures, two classes that mix them, so
FU's triplet loss is not 0), three real models (EfficientNet-Lite0 and MobileNetV2 with their
shipped ImageNet weights, LCNet-050 randomly initialised, without a source head) and every metric.
Scores through a real 2-worker `distributed.LocalCluster` equal those of the one-process run; a
worker process writes the store while tasks run; a failing model is one line and nothing is stored.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, real_patches
from metadb import api, store
from metadb.cli import cli
from metadb.executors import LocalPool
from metadb.models import add
from metadb.scoring import score

distributed = pytest.importorskip("distributed")  # in the `test` extra; the skip only guards a bare install

MODELS = {"lite0": ("tf_efficientnet_lite0", False), "mnv2": ("mobilenetv2_100", False), "tiny": ("lcnet_050", True)}


@pytest.fixture(scope="module")
def cluster():
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                 silence_logs=40)
    yield c
    c.close()


@pytest.fixture(scope="module")
def scored_store(tmp_path_factory) -> Path:
    """A store with the target and the three models registered, nothing scored yet (copy it per test)."""
    from PIL import Image

    base = tmp_path_factory.mktemp("score")
    for k, (texture, patch) in enumerate((t, p) for t in ("brick", "cell") for p in real_patches(t, 64, 12)):
        cls = base / "mixed" / ("ab"[k % 12 // 6])
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(patch).save(cls / f"{texture}{k}.png")
    db = base / "store.duckdb"
    api.ingest(db, path=base / "mixed", name="tgt", workers=1)
    for name, (arch, random_init) in MODELS.items():
        add(db, name, arch, random_init=random_init)
    return db


def copy_of(db: Path, to: Path) -> str:
    to.mkdir()
    shutil.copy(db, to / db.name)
    return str(to / db.name)


def stored(db: str) -> dict[tuple[str, str], tuple]:
    rows = api.sql("SELECT source, metric, value, n, params, flags FROM scores", db)[1]
    return {(s, m): rest for s, m, *rest in rows}


@pytest.fixture
def one_thread():
    """Dask's workers run torch on one thread (its nanny sets OMP_NUM_THREADS=1). Float32 convolutions
    sum in another order on two threads (features differ by up to 5e-6 here), so the one-process
    reference runs on one thread too, and the comparison can be exact. BLAS as well: H-score's pinv of
    a rank-deficient covariance (N < D) keeps a different number of singular values when the products
    sum in another order (1.0 on two OpenBLAS threads, 0.99999 on one)."""
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def test_scores_through_a_local_cluster_equal_the_one_process_run(scored_store, cluster, tmp_path, one_thread):
    import numpy as np

    from metadb.models import read_outputs

    inline, dask = copy_of(scored_store, tmp_path / "inline"), copy_of(scored_store, tmp_path / "dask")
    ref = score(inline, "tgt", None, ["all"], split="", workers=1)  # the pool of one runs tasks here, in order
    address = cluster.scheduler_address
    r = api_cli(["score", "--target", "tgt", "--metrics", "all", "--split", "", "--db", dask,
                 "--executor", "dask://" + address.split("://")[1]])
    assert r.exit_code == 0, r.output
    a, b = stored(inline), stored(dask)
    assert set(a) == set(b) and len(a) == len(ref.rows)
    # every metric ran for the models with a source head; LEEP, NCE and the like skip the random-init one
    assert {m for _, m in a} >= {"logme", "leep", "nce", "hscore", "sfda", "lp", "fu", "ncti", "lpfu"}
    assert ("tiny", "leep") not in a and ("tiny", "fu") in a
    for key in a:
        va, vb = a[key][0], b[key][0]
        # one thread on both sides: the same arithmetic, so the same float (FU included, its backward pass
        # is deterministic on the CPU; rel 1e-12 leaves room for nothing but summation-order noise)
        assert vb == pytest.approx(va, rel=1e-12, abs=1e-15), key
        assert a[key][1:] == b[key][1:], key  # n, params (normalised_over, seeds, saturation), flags
    # the outputs each worker extracted are cached and recorded, as the one-process run's are
    fa = dict(api.sql("SELECT model, path FROM model_features", inline)[1])
    fb = dict(api.sql("SELECT model, path FROM model_features", dask)[1])
    assert set(fa) == set(fb) == set(MODELS)
    for m in MODELS:
        assert Path(fb[m]).parent.parent == Path(f"{dask}.features")
        np.testing.assert_array_equal(read_outputs(fb[m])[0], read_outputs(fa[m])[0])
    # a warm run on the cluster reads them from the cache and gives the same scores again
    r = api_cli(["score", "--target", "tgt", "--metrics", "logme,lp", "--split", "", "--db", dask,
                 "--executor", address])
    assert r.exit_code == 0, r.output
    assert stored(dask)[("mnv2", "logme")][0] == a[("mnv2", "logme")][0]


def api_cli(args: list[str]):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, args)


def write_probe(db: str, fn, task):
    """In a pool worker, before the task: open the store for writing and write a row.

    The two workers' probes take turns (`wait`); a driver holding the store for the whole run would make
    them fail after 30 s."""
    con = store.connect(db, wait=30)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS probe (model VARCHAR, pid INTEGER)")
        con.execute("INSERT INTO probe VALUES (?, ?)", [task.model, os.getpid()])
    finally:
        con.close()
    return fn(task)


class ProbingPool(LocalPool):
    """The local pool, with each task first writing the store from its worker process."""

    def __init__(self, db: str):
        super().__init__(2, "spawn")  # this test process has run torch: forked workers could hang (see below)
        self.db = db

    def run(self, fn, items, resources=None):
        return super().run(functools.partial(write_probe, self.db, fn), items, resources)


def test_the_store_is_not_locked_while_tasks_run(scored_store, tmp_path):
    db = copy_of(scored_store, tmp_path / "s")
    # the probe can fail: while this process holds the store, another process cannot write it
    held = store.connect(db)
    code = f"from metadb import store; store.connect({db!r})"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    held.close()
    assert p.returncode != 0 and "StoreInUseError" in p.stderr
    pool = ProbingPool(db)
    try:
        result = score(db, "tgt", ["lite0", "tiny"], ["logme", "ncti"], split="", executor=pool)
    finally:
        pool.close()
    probes = api.sql("SELECT model, pid FROM probe ORDER BY model", db)[1]
    assert [m for m, _ in probes] == ["lite0", "tiny"] and os.getpid() not in {pid for _, pid in probes}
    assert len(result.rows) == 4 and len(stored(db)) == 4


def test_a_failing_model_is_one_line_and_nothing_is_stored(scored_store, cluster, tmp_path):
    db = copy_of(scored_store, tmp_path / "s")
    # mnv2's cache folder cannot be made (a file stands in its place): its worker fails, lite0's succeeds
    Path(f"{db}.features").mkdir()
    Path(f"{db}.features/mnv2").write_text("not a folder")
    address = cluster.scheduler_address
    r = api_cli(["score", "--target", "tgt", "--models", "lite0,mnv2", "--metrics", "logme,fu", "--split", "",
                 "--db", db, "--executor", address])
    assert r.exit_code == 1
    assert r.output.startswith("Error: scoring mnv2 on tgt failed after 3 attempt(s): FileExistsError: ")
    assert r.output.endswith("; nothing was stored\n") and r.output.count("\n") == 1
    assert api.sql("SELECT count(*) FROM scores", db)[1] == [(0,)]
    assert api.sql("SELECT count(*) FROM model_features", db)[1] == [(0,)]
    # a metric named explicitly that cannot run on one model is refused before any task runs; a model
    # whose weights file went bad fails inside its task on the local pool: one line naming it, nothing stored
    Path(f"{db}.features/mnv2").unlink()
    r = api_cli(["score", "--target", "tgt", "--models", "lite0,tiny", "--metrics", "nce", "--split", "", "--db", db])
    assert r.exit_code == 1 and r.output == ("Error: nce needs the model's source head (tiny on tgt); pick other "
                                             "metrics, or --metrics all to skip what cannot run\n")
    weights = tmp_path / "r18.pth"
    import timm
    import torch

    torch.save(timm.create_model("resnet10t").state_dict(), weights)
    assert api_cli(["models", "add", "r10", "--arch", "resnet10t", "--weights", str(weights), "--db", db]).exit_code == 0
    weights.write_bytes(b"not a checkpoint")
    r = api_cli(["score", "--target", "tgt", "--models", "lite0,r10", "--metrics", "logme", "--split", "", "--db", db])
    assert r.exit_code == 1
    assert r.output == f"Error: model r10: --weights {weights}: not a loadable torch checkpoint (UnpicklingError)\n"
    assert api.sql("SELECT count(*) FROM scores", db)[1] == [(0,)]
    assert api.sql("SELECT count(*) FROM model_features", db)[1] == [(0,)]


def test_the_default_pool_completes_after_the_driver_ran_openmp_code(scored_store, tmp_path):
    """A driver that already ran torch and scikit-learn on two threads (a notebook, the demo's `models add`)
    holds libgomp's thread pool; a forked worker inherits it without its threads. bench_score's driver hung
    that way once, a worker stuck in LP's first OpenMP region (scikit-learn's neighbours), though this
    smaller setting did not hang with forked workers here. The pool's workers are spawned: they inherit
    nothing, and this checks that the default pool completes from such a driver with the scores stored."""
    db = copy_of(scored_store, tmp_path / "s")
    code = f"""
import torch
from sklearn.neighbors import KNeighborsClassifier
torch.set_num_threads(2)
torch.nn.functional.conv2d(torch.ones(8, 16, 64, 64), torch.ones(16, 16, 3, 3))
KNeighborsClassifier(3).fit(torch.rand(500, 8).numpy(), [0, 1] * 250).predict(torch.rand(500, 8).numpy())
from metadb.scoring import score
r = score({db!r}, "tgt", ["lite0", "tiny"], ["lp"], split="")
print(sorted((m, round(v, 12)) for m, _, v, *_ in r.rows))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**env, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.startswith("[('lite0', ") and "('tiny', " in p.stdout
    assert sorted(m for m, in api.sql("SELECT source FROM scores WHERE metric = 'lp'", db)[1]) == ["lite0", "tiny"]
