"""All-pairs Frechet distance benchmark (issues 3 and 11), whole call against torchmetrics' recipe.

20 datasets' 1280-d Gaussians (covariances of 3,000 samples each, drawn from differently
structured distributions), all 190 pairs, in the same run:

1. Per operation, single-threaded CPU time (`time.process_time`, one BLAS/torch thread, best of
   --reps) on one pair: the one-off eigendecomposition (what `metadb embed` stores) and
   preparation (covariance and its Cholesky factor), then a pair's `dsygst` (L1^T S2 L1) and
   symmetric eigenvalue solve, the previous per-pair path (GEMM L1^T L2, Gram product,
   `eigvalsh`) and torchmetrics' recipe. CPU-time ratios are robust to other jobs on the cores.
2. Whole call, wall time: the one-off eigendecompositions and preparations spread over one
   single-threaded process per core (`map_items`), then all pairs likewise (`map_pairs`);
   against torchmetrics' recipe, the fastest published one (||m1 - m2||^2 + tr S1 + tr S2 -
   2 sum sqrt(eigvals(S1 @ S2)), float64, `_compute_fid`) timed per pair on a seeded sample of
   pairs (a) in this process with torch's default threads, (b) with one thread, and (c) spread
   over one single-threaded process per core (the fair baseline on these cores); its all-pairs
   time is the per-pair time x 190.
3. Accuracy: against `scipy.linalg.sqrtm(S1 @ S2)` (pytorch-fid, clean-fid) on a few pairs and
   against torchmetrics on its sampled pairs: max relative difference.

Every figure is printed with the 1-minute load average: other jobs share the cores.

Usage: python bench/bench_frechet.py [--pairs 6] [--sqrtm-pairs 3] [--datasets 20] [--dim 1280]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from functools import partial

import numpy as np
import torch
from scipy import linalg
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from metadb.measures.gaussian import factor, prepare_pairs, wasserstein2, wasserstein2_ready
from metadb.measures.pair_pool import default_workers, map_items, map_pairs


def gaussians(k: int, dim: int, n: int, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for i in range(k):
        basis = rng.normal(size=(dim, dim // 4)) * rng.uniform(0.2, 1.0)
        x = rng.normal(size=(n, dim // 4)) @ basis.T + rng.normal(size=(n, dim)) * 0.3 + rng.normal(size=dim)
        out.append((x.mean(axis=0), np.cov(x, rowvar=False)))
    return out


def sqrtm_recipe(m1, s1, m2, s2) -> float:
    covmean = linalg.sqrtm(s1.dot(s2)).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def torchmetrics_recipe(m1, s1, m2, s2) -> float:
    """torchmetrics.image.fid._compute_fid, on float64 tensors."""
    mu1, sigma1, mu2, sigma2 = (torch.from_numpy(a) for a in (m1, s1, m2, s2))
    a = (mu1 - mu2).square().sum(dim=-1)
    b = sigma1.trace() + sigma2.trace()
    c = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum(dim=-1)
    return float(a + b - 2 * c)


def _torchmetrics_one_thread(x, y) -> float:
    torch.set_num_threads(1)
    return torchmetrics_recipe(*x, *y)


def one_off(item, n: int):
    """What metadb does once per dataset: `embed`'s eigendecomposition, then frechet's preparation."""
    m, s = item
    w, v = np.linalg.eigh(s)
    return prepare_pairs(m, np.clip(w, 0, None), v, n, shrink=True)


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def cpu_best(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def per_operation(data, n: int, reps: int) -> dict[str, float]:
    """Single-threaded CPU seconds of each step on datasets 0 and 1."""
    (m1, s1), (m2, s2) = data[0], data[1]
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    with threadpool_limits(1):
        w1, v1 = np.linalg.eigh(s1)
        w2, v2 = np.linalg.eigh(s2)
        r1, r2 = prepare_pairs(m1, w1, v1, n, True), prepare_pairs(m2, w2, v2, n, True)
        f1, f2 = (m1, *factor(w1, v1, n, True)), (m2, *factor(w2, v2, n, True))
        m = lapack.dsygst(r2.cov, r1.chol, itype=3, lower=1)[0]
        steps = {
            "one-off eigendecomposition (np.linalg.eigh)": lambda: np.linalg.eigh(s1),
            "one-off preparation (cov from eigenpairs, Cholesky)": lambda: prepare_pairs(m1, w1, v1, n, True),
            "pair: dsygst L1^T S2 L1": lambda: lapack.dsygst(r2.cov, r1.chol, itype=3, lower=1),
            "pair: symmetric eigenvalues (dsyevd, values only)": lambda: linalg.eigh(
                m, lower=True, eigvals_only=True, check_finite=False, driver="evd"),
            "pair: metadb whole pair (wasserstein2_ready)": lambda: wasserstein2_ready(r1, r2),
            "pair: previous metadb (GEMM L1^T L2 + Gram + eigvalsh)": lambda: wasserstein2(*f1, *f2),
            "pair: torchmetrics recipe (eigvals(S1 @ S2))": lambda: torchmetrics_recipe(m1, s1, m2, s2),
        }
        for name, fn in steps.items():
            out[name] = cpu_best(fn, reps)
            print(f"    {name:58s} {out[name] * 1000:7.0f} ms CPU   ({load()})", flush=True)
    torch.set_num_threads(torch_threads)
    return out


def _lapacke_values_only(name: str):
    """LAPACKE's two-stage symmetric eigenvalue drivers from scipy's bundled OpenBLAS (scipy does not wrap them)."""
    import ctypes
    import glob

    import scipy

    libs = glob.glob(os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs", "libscipy_openblas*.so"))
    fn = getattr(ctypes.CDLL(libs[0]), f"scipy_LAPACKE_{name}", None) if libs else None
    if fn is None:
        return None

    def values(a: np.ndarray) -> np.ndarray:
        a, w = np.array(a, order="F"), np.empty(a.shape[0])
        info = fn(102, ctypes.c_char(b"N"), ctypes.c_char(b"L"), a.shape[0], a.ctypes.data_as(ctypes.c_void_p),
                  a.shape[0], w.ctypes.data_as(ctypes.c_void_p))
        assert info == 0, info
        return w

    return values


def alternatives(data, n: int, reps: int) -> None:
    """Single-threaded CPU of the per-pair routes considered and not taken (issue 11's questions)."""
    (m1, s1), (m2, s2) = data[0], data[1]
    w1, v1 = np.linalg.eigh(s1)
    r1, r2 = prepare_pairs(m1, w1, v1, n, True), prepare_pairs(m2, *np.linalg.eigh(s2), n, True)
    m = lapack.dsygst(r2.cov, r1.chol, itype=3, lower=1)[0]
    c = r1.chol.T @ r2.chol
    ref = np.sqrt(np.clip(linalg.eigh(m, lower=True, eigvals_only=True), 0, None)).sum()
    others = [prepare_pairs(d[0], *np.linalg.eigh(d[1]), n, True).chol for d in data[2:6]]
    steps = {
        "GEMM L1^T L2 (the previous path's product)": (lambda: r1.chol.T @ r2.chol, None),
        "batched GEMM L1^T [L2 .. L5], per pair": (lambda: r1.chol.T @ np.hstack(others), len(others)),
        "Gram C C^T (syrk)": (lambda: c @ c.T, None),
        "eigenvalues, dsyevr values only": (lambda: linalg.eigh(m, lower=True, eigvals_only=True, driver="evr"),
                                            None),
        "singular values of C, dgesdd values only (no Gram)": (lambda: linalg.svdvals(c), None),
    }
    for name in ("dsyevd_2stage", "dsyev_2stage"):
        fn = _lapacke_values_only(name)
        if fn is not None:
            got = np.sqrt(np.clip(fn(m), 0, None)).sum()
            steps[f"eigenvalues, {name} values only (rel. diff {abs(got - ref) / ref:.0e})"] = (partial(fn, m), None)
    with threadpool_limits(1):
        for name, (fn, per) in steps.items():
            t = cpu_best(fn, reps) / (per or 1)
            print(f"    {name:58s} {t * 1000:7.0f} ms CPU   ({load()})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", type=int, default=20)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--pairs", type=int, default=6, help="pairs timed with torchmetrics' recipe (each setting)")
    ap.add_argument("--sqrtm-pairs", type=int, default=3, help="pairs checked against the sqrtm closed form")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each per-operation timing (best kept)")
    ap.add_argument("--alternatives", action="store_true", help="also time the per-pair routes not taken")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data = gaussians(args.datasets, args.dim, args.samples, rng)
    pairs = list(itertools.combinations(range(args.datasets), 2))
    sample = [pairs[i] for i in rng.choice(len(pairs), size=args.pairs, replace=False)]
    cores = default_workers()
    torch_threads = torch.get_num_threads()
    items = dict(enumerate(data))
    print(f"all-pairs Frechet, {args.datasets} datasets ({len(pairs)} pairs), D={args.dim}, {cores} cores")

    # the whole call first, and torchmetrics over forked processes before torch's threads start here
    t0, c0 = time.perf_counter(), time.process_time() + children_cpu()
    ready = map_items(partial(one_off, n=args.samples), items)
    t_one_off = time.perf_counter() - t0
    ours = dict(zip(pairs, map_pairs(wasserstein2_ready, ready, pairs)))
    t_ours, cpu_ours = time.perf_counter() - t0, time.process_time() + children_cpu() - c0
    t_pairs = t_ours - t_one_off
    print(f"  metadb whole call: {t_ours:.1f} s wall ({cpu_ours:.1f} s CPU) = {t_one_off:.1f} s one-off "
          f"eigendecompositions + preparations + {t_pairs:.1f} s for the pairs, over {cores} processes ({load()})")
    del ready

    t0 = time.perf_counter()
    map_pairs(_torchmetrics_one_thread, items, sample)  # in this process when under 4 pairs
    t_tm_split = (time.perf_counter() - t0) / len(sample)
    torch.set_num_threads(torch_threads)
    print(f"  torchmetrics, {len(sample)} pairs over {cores} single-threaded processes: "
          f"{t_tm_split:.3f} s/pair wall ({load()})", flush=True)
    t0 = time.perf_counter()
    tm = {p: torchmetrics_recipe(*data[p[0]], *data[p[1]]) for p in sample}
    t_tm_default = (time.perf_counter() - t0) / len(sample)
    print(f"  torchmetrics, torch's {torch_threads} threads: {t_tm_default:.3f} s/pair wall ({load()})", flush=True)
    torch.set_num_threads(1)
    with threadpool_limits(1):
        t0, c0 = time.perf_counter(), time.process_time()
        for p in sample:
            torchmetrics_recipe(*data[p[0]], *data[p[1]])
        t_tm_one, cpu_tm_one = (time.perf_counter() - t0) / len(sample), (time.process_time() - c0) / len(sample)
    torch.set_num_threads(torch_threads)
    print(f"  torchmetrics, one thread: {t_tm_one:.3f} s/pair wall, {cpu_tm_one:.3f} s/pair CPU ({load()})")
    t_tm = min(t_tm_default, t_tm_one)
    print(f"    all pairs, one process at its faster setting: {t_tm * len(pairs):.1f} s: metadb "
          f"**{t_tm * len(pairs) / t_ours:.1f}x faster**")
    print(f"    all pairs over {cores} single-threaded processes: {t_tm_split * len(pairs):.1f} s: metadb "
          f"**{t_tm_split * len(pairs) / t_ours:.1f}x faster**")
    print(f"    CPU time, all pairs at one thread: {cpu_tm_one * len(pairs):.1f} s vs metadb's {cpu_ours:.1f} s: "
          f"**{cpu_tm_one * len(pairs) / cpu_ours:.1f}x less CPU**")

    check = sample[: args.sqrtm_pairs]
    ref = {p: sqrtm_recipe(*data[p[0]], *data[p[1]]) for p in check}
    rel_sqrtm = max(abs(ours[p] - ref[p]) / abs(ref[p]) for p in check)
    rel_tm = max(abs(ours[p] - tm[p]) / abs(tm[p]) for p in sample)
    print(f"  max relative difference: {rel_sqrtm:.1e} against the sqrtm closed form ({len(check)} pairs), "
          f"{rel_tm:.1e} against torchmetrics ({len(sample)} pairs)")

    print("  per operation, one pair, single-threaded CPU:")
    ops = per_operation(data, args.samples, args.reps)
    pair = ops["pair: metadb whole pair (wasserstein2_ready)"]
    tm_pair = ops["pair: torchmetrics recipe (eigvals(S1 @ S2))"]
    one = (ops["one-off eigendecomposition (np.linalg.eigh)"]
           + ops["one-off preparation (cov from eigenpairs, Cholesky)"])
    whole = args.datasets * one + len(pairs) * pair
    if args.alternatives:
        print("  alternatives, single-threaded CPU:")
        alternatives(data, args.samples, args.reps)
    print(f"    per pair: torchmetrics / metadb = {tm_pair / pair:.1f}x; whole call's CPU from these: "
          f"{whole:.1f} s vs torchmetrics' {len(pairs) * tm_pair:.1f} s = {len(pairs) * tm_pair / whole:.1f}x")


if __name__ == "__main__":
    main()
