"""LogME benchmark (issue 5): metadb's `logme` against the authors' numpy implementation, same run.

N=10,000, D=1280, C=10 seeded features with class structure. The reference is thuml/LogME's
LogME.py (fixed-point `LogME().fit`), imported from the folder given by --reference (or
$LOGME_REFERENCE), never from the project. If numba is missing there, a stub that leaves
functions un-jitted is used (the fixed-point path the reference runs is plain numpy).

Usage: python bench/bench_logme.py --reference /path/to/LogME-checkout
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types

import numpy as np

from metadb.metrics import logme


def load_reference(folder: str):
    try:
        import numba  # noqa: F401
    except ImportError:
        stub = types.ModuleType("numba")
        stub.njit = lambda f=None, **k: f if f is not None else (lambda g: g)
        sys.modules["numba"] = stub
    sys.path.insert(0, folder)
    from LogME import LogME  # the authors' file

    return LogME


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", default=os.environ.get("LOGME_REFERENCE"))
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=1280)
    ap.add_argument("--c", type=int, default=10)
    args = ap.parse_args()
    if not args.reference or not os.path.exists(os.path.join(args.reference, "LogME.py")):
        print("give --reference DIR holding the authors' LogME.py (a checkout of github.com/thuml/LogME)")
        sys.exit(2)
    LogME = load_reference(args.reference)
    rng = np.random.default_rng(0)
    y = np.arange(args.n) % args.c
    f = rng.normal(size=(args.c, args.d))[y] * 0.5 + rng.normal(size=(args.n, args.d))
    t0 = time.perf_counter()
    ref = LogME().fit(f, y)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = logme(f, y)
    t_ours = time.perf_counter() - t0
    print(f"LogME N={args.n} D={args.d} C={args.c}: reference {t_ref:.2f} s, metadb {t_ours:.2f} s: "
          f"{t_ref / t_ours:.1f}x faster; relative difference {abs(ours - ref) / abs(ref):.1e}")


if __name__ == "__main__":
    main()
