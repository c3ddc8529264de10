"""Cluster benchmark (issue 11): the Dask path against the local pool on this machine, same run.

1. Ingest of 2,000 JPEGs (1024x1024 crops of real scikit-image samples, as bench_ingest.py) through
   a 2-worker `distributed.LocalCluster` against the local process pool of 2 workers.
2. A 6-trial CPU fine-tuning grid (digits 3 vs 8, timm `test_resnet` at 16 px, 1 epoch, 3 folds x
   2 learning rates) through the same LocalCluster against the local pool.

Rounds alternate local and Dask so a busy machine hurts both alike. The cluster is started once,
outside the timings (it is infrastructure, like a Slurm allocation); its start-up is printed on its
own. Per-shard worker time and the driver's merge/commit time are printed for the projection in
bench/RESULTS.md. Usage: python bench/bench_cluster.py [--jpegs 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 cores, 2 workers: one thread each, for both paths

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench_ingest import make_jpegs  # noqa: E402


def digits_target(root: Path, db: str) -> None:
    """The test suite's fine-tuning target: real digits 3 and 8, 60/20/20 per class, imagefolder splits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from metadb import api

    d = load_digits()
    for label in (3, 8):
        idx = np.flatnonzero(d.target == label)
        for split, part in (("train", idx[:60]), ("val", idx[60:80]), ("test", idx[80:100])):
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True)
            for i in part:
                Image.fromarray((d.images[i] * 16).clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    api.ingest(db, path=root, name="digits", workers=1)


def worker_cpu(dask_pids: set[int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's worker children: the pool's and Dask's.

    Other sessions share these 2 cores, so wall ratios swing with their load; CPU per image does
    not, and is what a worker's overhead (profiler, event loop, allocator) shows up in.
    """
    import psutil

    out = {"local": 0.0, "dask": 0.0}
    for child in psutil.Process().children():
        try:
            t = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        out["dask" if child.pid in dask_pids else "local"] += t.user + t.system
    return out


def grid(db: str, executor):
    import shutil

    from metadb.finetune import runner

    shutil.rmtree(f"{db}.runs", ignore_errors=True)
    import duckdb

    con = duckdb.connect(db)
    con.execute("DELETE FROM outcomes WHERE origin = 'run'")
    con.execute("DELETE FROM runs")
    con.close()
    t0 = time.perf_counter()
    s = runner.finetune(db, "digits", ["random"], "cats-scans",
                        {"architecture": "test_resnet", "image_size": "16", "batch_size": "32", "epochs": "1",
                         "folds": "3"}, {"lr": ["1e-3", "1e-2"]}, "cpu", None, False, executor=executor)
    wall = time.perf_counter() - t0
    assert len(s.records) == 6, s.line()
    return wall, [r.wall_s for _, r in s.records], s.commit_seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jpegs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()


    from metadb import api
    from metadb.executors import LocalPool, create_executor

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        make_jpegs(tmp / "jpegs", args.jpegs)
        t0 = time.perf_counter()
        dask_ex = create_executor("local-cluster:2")  # what `--executor local-cluster:2` starts
        client = dask_ex.client
        client.run(lambda: __import__("metadb.ingest") and __import__("metadb.finetune.trial") and None)
        print(f"LocalCluster of 2 workers started and warmed (imports) in {time.perf_counter() - t0:.1f} s; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        dask_pids = set(client.run(os.getpid).values())
        local_ex = LocalPool(2)
        ratios = []
        for k in range(args.rounds):
            row, cpu = {}, {}
            for name, ex in (("local", local_ex), ("dask", dask_ex)):
                db = tmp / f"{name}.duckdb"
                db.unlink(missing_ok=True)
                c0 = worker_cpu(dask_pids)[name]
                r = api.ingest(str(db), path=tmp / "jpegs", name="jpegs", executor=ex, progress=False)
                row[name], cpu[name] = r, worker_cpu(dask_pids)[name] - c0
            lo, da = row["local"], row["dask"]
            ratios.append(lo.seconds / da.seconds)
            print(f"round {k + 1} ingest {args.jpegs} JPEGs: local pool {lo.seconds:.1f} s ({args.jpegs / lo.seconds:.0f} img/s), "
                  f"LocalCluster {da.seconds:.1f} s ({args.jpegs / da.seconds:.0f} img/s): dask/local speed "
                  f"{lo.seconds / da.seconds:.2f}x; per shard ({len(da.shard_seconds)} x 256 images) median "
                  f"{statistics.median(da.shard_seconds):.2f} s (local {statistics.median(lo.shard_seconds):.2f} s); workers' CPU "
                  f"{cpu['dask']:.1f} s vs {cpu['local']:.1f} s local: {cpu['dask'] / cpu['local']:.2f}x; merge+commit {da.commit_seconds:.2f} s "
                  f"(local {lo.commit_seconds:.2f} s); load average {os.getloadavg()[0]:.1f}", flush=True)
        db = str(tmp / "ft.duckdb")
        digits_target(tmp / "digits", db)
        for k in range(args.rounds):
            (wl, tl, cl), (wd, td, cd) = grid(db, local_ex), grid(db, dask_ex)
            print(f"round {k + 1} 6-trial grid: local pool {wl:.1f} s, LocalCluster {wd:.1f} s: dask/local speed "
                  f"{wl / wd:.2f}x; per trial median {statistics.median(td):.2f} s (local {statistics.median(tl):.2f} s); "
                  f"commit per trial {cd / 6 * 1000:.0f} ms; load average {os.getloadavg()[0]:.1f}", flush=True)
        local_ex.close()
        dask_ex.close()


if __name__ == "__main__":
    main()
