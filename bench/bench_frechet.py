"""All-pairs Frechet distance benchmark (issues 3 and 11), whole call against torchmetrics' recipe.

20 datasets' 1280-d Gaussians (covariances of 3,000 samples each, drawn from differently
structured distributions), all 190 pairs, in the same run:

- metadb, whole call: the one-off eigendecomposition of each covariance (what `metadb embed`
  stores; timed here, not assumed free), then every pair by `frechet`'s closed form
  (tr sqrt(S1^1/2 S2 S1^1/2) as the sum of square roots of the eigenvalues of a symmetric Gram
  matrix, `eigvalsh`), pairs spread over one single-threaded process per core (pair_pool);
- torchmetrics' recipe, the fastest published one: ||m1 - m2||^2 + tr S1 + tr S2 -
  2 sum sqrt(eigvals(S1 @ S2)) in float64 (torchmetrics `_compute_fid`), timed per pair on a
  seeded sample of pairs with torch's default threads and with one thread; its all-pairs time is
  the faster per-pair time x 190, and also that single-thread time x 190 / cores (an ideal split
  of its pairs over one process per core, as metadb's);
- accuracy: against the `scipy.linalg.sqrtm(S1 @ S2)` closed form (pytorch-fid, clean-fid) on a
  few sampled pairs, and against torchmetrics on its sampled pairs: max relative difference.

Usage: python bench/bench_frechet.py [--pairs 8] [--sqrtm-pairs 3] [--datasets 20] [--dim 1280]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np
import torch
from scipy import linalg
from threadpoolctl import threadpool_limits

from metadb.measures.gaussian import factor, wasserstein2
from metadb.measures.pair_pool import default_workers, map_pairs


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


def _w2(x, y) -> float:
    return wasserstein2(*x, *y)


def timed_pairs(fn, data, pairs) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = {p: fn(*data[p[0]], *data[p[1]]) for p in pairs}
    return (time.perf_counter() - t0) / len(pairs), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", type=int, default=20)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--pairs", type=int, default=8, help="pairs timed with torchmetrics' recipe (each setting)")
    ap.add_argument("--sqrtm-pairs", type=int, default=3, help="pairs checked against the sqrtm closed form")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data = gaussians(args.datasets, args.dim, args.samples, rng)
    pairs = list(itertools.combinations(range(args.datasets), 2))
    sample = [pairs[i] for i in rng.choice(len(pairs), size=args.pairs, replace=False)]

    t0 = time.perf_counter()
    factors = {}
    for i, (m, s) in enumerate(data):  # what `metadb embed` computes and stores once per dataset
        w, v = np.linalg.eigh(s)
        factors[i] = (m, *factor(np.clip(w, 0, None), v, args.samples, shrink=True))
    t_eig = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = dict(zip(pairs, map_pairs(_w2, factors, pairs)))
    t_pairs = time.perf_counter() - t0
    t_ours = t_eig + t_pairs

    t_tm_default, tm = timed_pairs(torchmetrics_recipe, data, sample)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        t_tm_one, _ = timed_pairs(torchmetrics_recipe, data, sample)
    torch.set_num_threads(torch_threads)
    t_tm = min(t_tm_default, t_tm_one)
    cores = default_workers()
    whole_tm, whole_tm_split = t_tm * len(pairs), t_tm_one * len(pairs) / cores

    check = sample[: args.sqrtm_pairs]
    _, ref = timed_pairs(sqrtm_recipe, data, check)
    rel_sqrtm = max(abs(ours[p] - ref[p]) / abs(ref[p]) for p in check)
    rel_tm = max(abs(ours[p] - tm[p]) / abs(tm[p]) for p in sample)
    print(f"all-pairs Frechet, {args.datasets} datasets ({len(pairs)} pairs), D={args.dim}, {cores} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  metadb whole call: {t_ours:.1f} s = {t_eig:.1f} s of one-off eigendecompositions + {t_pairs:.1f} s "
          f"for the pairs ({t_pairs / len(pairs) * 1000:.0f} ms per pair over {cores} processes)")
    print(f"  torchmetrics recipe: {t_tm_default:.3f} s/pair with torch's {torch_threads} threads, "
          f"{t_tm_one:.3f} s/pair with one ({len(sample)} sampled pairs)")
    print(f"    all pairs, one process at its faster setting: {whole_tm:.1f} s: metadb "
          f"**{whole_tm / t_ours:.1f}x faster**")
    print(f"    all pairs split ideally over {cores} single-threaded processes: {whole_tm_split:.1f} s: metadb "
          f"**{whole_tm_split / t_ours:.1f}x faster**")
    print(f"  max relative difference: {rel_sqrtm:.1e} against the sqrtm closed form ({len(check)} pairs), "
          f"{rel_tm:.1e} against torchmetrics ({len(sample)} pairs)")


if __name__ == "__main__":
    main()
