"""All-pairs work spread over processes: one BLAS thread per core instead of one process.

A closed-form pair distance at D = 1280 is a D x D product and a symmetric eigenvalue solve.
The eigenvalue solve's tridiagonal reduction is half matrix-vector work, which BLAS threads
barely speed up, so one single-threaded process per core computes about twice the pairs per
second of one process with a thread per core. Workers are forked, so the per-dataset inputs
(factors of D x D covariances) are shared, not pickled; only pair indices and floats travel.
Where fork is unavailable, or for a handful of pairs, the pairs run in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_JOB: tuple[Callable[..., float], dict[Hashable, Any]] | None = None  # set before forking, read by workers

MIN_PAIRS = 4  # fewer pairs than this run in-process: a fork costs more than they do


def _init() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread per worker process: the workers are the parallelism


def _run(chunk: list[tuple[Hashable, Hashable]]) -> list[float]:
    fn, items = _JOB  # type: ignore[misc]
    return [fn(items[a], items[b]) for a, b in chunk]


def _run_one(key: Hashable) -> Any:
    fn, items = _JOB  # type: ignore[misc]
    return fn(items[key])


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_init)


def map_items(fn: Callable[[Any], Any], items: dict[Hashable, Any], workers: int | None = None) -> dict[Hashable, Any]:
    """{k: fn(items[k])}, one item per task over up to `workers` forked single-BLAS-thread processes.

    For the one-off per-dataset work before the pairs (an eigendecomposition, a Cholesky factor):
    run with the driver's BLAS threads it thrashes whenever other processes share the cores.
    Results travel back pickled, so `fn` should return only what the pairs need.
    """
    global _JOB
    workers = min(workers or default_workers(), len(items))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return {k: fn(v) for k, v in items.items()}
    keys = sorted(items, key=str)
    _JOB = (fn, items)
    try:
        with _pool(workers) as pool:
            return dict(zip(keys, pool.map(_run_one, keys)))
    finally:
        _JOB = None


def map_pairs(fn: Callable[[Any, Any], float], items: dict[Hashable, Any], pairs: Sequence[tuple[Hashable, Hashable]],
              workers: int | None = None) -> list[float]:
    """[fn(items[a], items[b]) for a, b in pairs], computed by up to `workers` forked processes (default: one per core)."""
    global _JOB
    workers = min(workers or default_workers(), len(pairs))
    if workers <= 1 or len(pairs) < MIN_PAIRS or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(items[a], items[b]) for a, b in pairs]
    chunks = [list(pairs[i::workers * 2]) for i in range(workers * 2)]  # interleaved: equal work per chunk
    _JOB = (fn, items)
    try:
        with _pool(workers) as pool:
            done = list(pool.map(_run, chunks))
    finally:
        _JOB = None
    out: list[float] = [0.0] * len(pairs)
    for i, values in enumerate(done):
        out[i::workers * 2] = values
    return out
