"""Ingest benchmark (issue 2): image-statistics ingest against a naive baseline, and flat memory.

1. Throughput: a JPEG ImageFolder of 2,000 images of 1024x1024, cut from real images that
   scikit-image ships, ingested by metadb (default workers, working size 256) against a naive
   baseline measured in the same run: PIL open, full decode, numpy statistics, one process.
2. Memory: peak RSS of ingesting 100k small images against 10k (same images, repeated), each in
   a fresh process; flat memory means the ratio stays near 1.
3. Listing: finding the images of an ImageFolder of 100k files (10 class folders) with metadb's
   walk (which also reports unlistable folders, broken and repeated symlinks) against pathlib's
   rglob filter it replaced, measured in the same run.

Prints ratios; copy them into bench/RESULTS.md. Usage: python bench/bench_ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from ingest_script import naive

SOURCES = ("retina", "astronaut", "coffee", "chelsea", "immunohistochemistry", "camera", "brick", "grass",
           "gravel", "rocket", "hubble_deep_field")


def make_jpegs(root: Path, n: int, size: int = 1024) -> None:
    """n JPEGs of size x size: seeded crops and flips of upscaled real sample images."""
    rng = np.random.default_rng(0)
    bases = []
    for name in SOURCES:
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        scale = 1.6 * size / min(img.size)
        bases.append(img.resize((int(img.width * scale), int(img.height * scale)), Image.BICUBIC))
    for k in range(n):
        cls = SOURCES[k % len(SOURCES)]
        img = bases[k % len(SOURCES)]
        x, y = rng.integers(0, img.width - size), rng.integers(0, img.height - size)
        crop = img.crop((x, y, x + size, y + size))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        (root / cls).mkdir(parents=True, exist_ok=True)
        crop.save(root / cls / f"{k:05d}.jpg", quality=90)


def metadb_ingest(root: Path, db: Path, *extra: str) -> float:
    """The whole command, interpreter start-up and commit included."""
    db.unlink(missing_ok=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metadb.cli", "ingest", "--path", str(root), "--name", "bench",
                    "--db", str(db), *extra], check=True, capture_output=True)
    return time.perf_counter() - t0


def cpu_seconds(children: bool) -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def draft_only(n_jpeg: int, rounds: int) -> None:
    """metadb (2 workers, whole command) against the one-process draft() script (whole command), alternating.

    Other jobs share this machine, so each round prints the load average, both wall times and
    both CPU times (the script's own; metadb's driver and workers); the summary is best-of-rounds.
    """
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        make_jpegs(tmp / "jpegs", n_jpeg)
        walls: dict[str, list[float]] = {"script": [], "metadb": []}
        for _ in range(rounds):  # alternating, so a busy machine hurts both alike
            c0 = cpu_seconds(True)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, str(Path(__file__).with_name("ingest_script.py")), str(tmp / "jpegs"),
                            "256"], check=True)
            t_draft = time.perf_counter() - t0
            c_draft = cpu_seconds(True) - c0
            c0 = cpu_seconds(True)
            t_ours = metadb_ingest(tmp / "jpegs", tmp / "bench.duckdb", "--workers", "2")
            c_ours = cpu_seconds(True) - c0
            walls["script"].append(t_draft)
            walls["metadb"].append(t_ours)
            print(f"ingest {n_jpeg} JPEGs 1024x1024: one-process draft(256) script {t_draft:.1f} s "
                  f"({n_jpeg / t_draft:.0f} img/s, CPU {c_draft:.1f} s), metadb 2 workers {t_ours:.1f} s "
                  f"({n_jpeg / t_ours:.0f} img/s, CPU {c_ours:.1f} s incl. start-up): {t_draft / t_ours:.2f}x; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        best_s, best_m = min(walls["script"]), min(walls["metadb"])
        print(f"best of {rounds}: script {best_s:.1f} s, metadb {best_m:.1f} s: {best_s / best_m:.2f}x")


PEAK = """
import json, resource, sys
from metadb import api
r = api.ingest(sys.argv[1], path=sys.argv[2], name="mem")
print(json.dumps({"ok": r.images_ok,
                  "main_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "workers_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def make_small(root: Path, n: int) -> Path:
    """n 28x28 PNGs in the csv layout, cut from real digit images (repeated files, distinct rows)."""
    from sklearn.datasets import load_digits

    (root / "img").mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    for k, img in enumerate(digits.images[:1000]):
        Image.fromarray(np.kron(img * 15, np.ones((4, 4))).astype(np.uint8)[2:30, 2:30]).save(root / "img" / f"{k}.png")
    with (root / "labels.csv").open("w") as fh:
        fh.write("path,label\n")
        for k in range(n):
            fh.write(f"img/{k % 1000}.png,{digits.target[k % 1000]}\n")
    return root / "labels.csv"


def peak_rss(tmp: Path, n: int) -> dict:
    csv = make_small(tmp / f"small{n}", n)
    out = subprocess.run([sys.executable, "-c", PEAK, str(tmp / f"mem{n}.duckdb"), str(csv)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def listing(tmp: Path, n: int) -> tuple[float, float]:
    """(rglob filter s, metadb walk s), best of 3, on n empty .png files in 10 class folders."""
    from metadb.loaders.base import IMAGE_SUFFIXES, image_files

    root = tmp / "listing"
    for k in range(n):
        d = root / f"class{k % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{k:06d}.png").touch()

    def rglob() -> list[Path]:
        return sorted(p for p in root.rglob("*")
                      if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())

    times = []
    for fn in (rglob, lambda: image_files(root)):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            found = fn()
            best = min(best, time.perf_counter() - t0)
        assert len(found) == n
        times.append(best)
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="200 JPEGs and 1k/10k images, for a smoke run")
    ap.add_argument("--memory-only", action="store_true", help="skip the JPEG throughput part")
    ap.add_argument("--listing-only", action="store_true", help="only the folder listing part")
    ap.add_argument("--draft-only", action="store_true",
                    help="only metadb (2 workers) against the one-process draft() script, alternating --rounds times")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jpegs", type=int, help="number of JPEGs (default 2,000; 200 with --quick)")
    args = ap.parse_args()
    n_list = 10_000 if args.quick else 100_000
    if args.draft_only:
        draft_only(args.jpegs or (200 if args.quick else 2_000), args.rounds)
        return
    with tempfile.TemporaryDirectory() as d:
        t_rglob, t_walk = listing(Path(d), n_list)
        print(f"list {n_list:,} images in 10 folders: rglob filter {t_rglob:.2f} s, metadb walk {t_walk:.2f} s: "
              f"{t_rglob / t_walk:.2f}x")
    if args.listing_only:
        return
    n_jpeg, small = (200, (1_000, 10_000)) if args.quick else (2_000, (10_000, 100_000))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.memory_only:
            n_jpeg = 0
        make_jpegs(tmp / "jpegs", n_jpeg)
        if n_jpeg:
            t_naive = naive(tmp / "jpegs")
            t_draft = naive(tmp / "jpegs", draft=256)
            t_ours = metadb_ingest(tmp / "jpegs", tmp / "bench.duckdb")
            print(f"ingest {n_jpeg} JPEGs 1024x1024: full-decode script {t_naive:.1f} s ({n_jpeg / t_naive:.0f} img/s), "
                  f"draft(256) script {t_draft:.1f} s ({n_jpeg / t_draft:.0f} img/s), "
                  f"metadb {t_ours:.1f} s ({n_jpeg / t_ours:.0f} img/s): {t_naive / t_ours:.1f}x over full decode, "
                  f"{t_draft / t_ours:.2f}x over the draft script")
        lo, hi = (peak_rss(tmp, n) for n in small)
        print(f"peak RSS {small[0]:,} images: main {lo['main_kb'] / 1024:.0f} MiB, worker {lo['workers_kb'] / 1024:.0f} MiB; "
              f"{small[1]:,} images: main {hi['main_kb'] / 1024:.0f} MiB, worker {hi['workers_kb'] / 1024:.0f} MiB; "
              f"ratio main {hi['main_kb'] / lo['main_kb']:.2f}, worker {hi['workers_kb'] / lo['workers_kb']:.2f}")


if __name__ == "__main__":
    main()
