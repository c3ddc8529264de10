"""LogME benchmark: metadb's `logme` against the authors' numpy implementation, timed in the same run.

Seeded features with class structure, N=10,000, D=1280, C=10 by default; --dead K appends K
all-zero columns (dead ReLU units), where the scores must still agree. The reference is
thuml/LogME's LogME.py (`LogME().fit`, its default fixed-point path), imported from the folder
given by --reference or $LOGME_REFERENCE, never from the project. LogME.py imports numba for its
other (ICML) path only; if numba is not installed a stub that leaves functions un-jitted stands in.

Prints both times (best of --repeat runs each), the ratio, and the relative difference of the
scores and of the per-class evidences.

Usage: python bench/bench_logme.py --reference /path/to/a/LogME/checkout [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types

import numpy as np

from metadb.metrics import logme
from metadb.metrics.logme import fit

HOW_TO_GET_IT = """\
bench_logme.py compares against the authors' LogME implementation, which is not part of metadb.
Give the folder holding their LogME.py:

    git clone https://github.com/thuml/LogME /tmp/LogME
    python bench/bench_logme.py --reference /tmp/LogME      (or set LOGME_REFERENCE=/tmp/LogME)
"""


def load_reference(folder: str):
    """The authors' LogME class, imported from `folder` (numba stubbed if absent)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        stub = types.ModuleType("numba")
        stub.njit = lambda f=None, **k: f if f is not None else (lambda g: g)
        sys.modules["numba"] = stub
    sys.path.insert(0, os.path.abspath(folder))
    try:
        from LogME import LogME  # the authors' file
    finally:
        sys.path.pop(0)
    return LogME


def best_of(repeat: int, fn):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=os.environ.get("LOGME_REFERENCE"),
                    help="folder holding thuml/LogME's LogME.py (default $LOGME_REFERENCE)")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--c", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dead", type=int, default=0, help="append this many all-zero (dead ReLU) feature columns")
    args = ap.parse_args()
    if not args.reference or not os.path.isfile(os.path.join(args.reference, "LogME.py")):
        found = f" ({args.reference!r} has no LogME.py)" if args.reference else ""
        print(f"no reference implementation given{found}.\n{HOW_TO_GET_IT}", file=sys.stderr)
        sys.exit(2)
    LogME = load_reference(args.reference)

    rng = np.random.default_rng(0)
    y = np.arange(args.n) % args.c
    f = rng.normal(size=(args.c, args.d))[y] * 0.5 + rng.normal(size=(args.n, args.d))
    f = np.concatenate([f, np.zeros((args.n, args.dead))], axis=1)

    def reference():
        model = LogME(regression=False)
        return model.fit(f, y), model

    t_ref, (ref, model) = best_of(args.repeat, reference)
    t_ours, ours = best_of(args.repeat, lambda: logme(f, y))
    onehot = (y[:, None] == np.arange(args.c)).astype(np.float64)
    _, alpha, beta = fit(f, onehot)
    print(f"LogME N={args.n} D={args.d} (+{args.dead} dead columns) C={args.c}, best of {args.repeat}")
    print(f"  reference (thuml/LogME LogME().fit): {t_ref:.3f} s")
    print(f"  metadb logme:                        {t_ours:.3f} s")
    print(f"  speed-up: {t_ref / t_ours:.1f}x")
    print(f"  score: reference {ref!r}, metadb {ours!r}; relative difference {abs(ours - ref) / abs(ref):.1e}")
    rel = [abs(ours - ref) / abs(ref)]
    for name, mine in (("alphas", alpha), ("betas", beta)):
        theirs = np.asarray(getattr(model, name), dtype=np.float64).reshape(-1)
        rel.append(float(np.max(np.abs(mine - theirs) / np.abs(theirs))))
        print(f"  per-class {name[:-1]}: max relative difference {rel[-1]:.1e}")
    print(f"  max relative difference (score, alphas, betas): {max(rel):.1e}")


if __name__ == "__main__":
    main()
