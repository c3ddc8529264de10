"""Transferability metrics: plain functions of arrays, one module each, registered by name.

`from metadb.metrics import logme, leep, nce, hscore` gives functions usable without a store;
`metrics` lists them with what each consumes (target features, source-head probabilities or
source pseudo-labels). Inputs are validated once, at the function boundary.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

import numpy as np

from metadb.errors import MetadbError
from metadb.registry import Registry

metrics: Registry[Callable[..., float]] = Registry("metric")
NEEDS = ("features", "source_probs", "pseudo_labels")


def register_metric(name: str, version: str = "1", needs: str = "features"):
    """Register a metric function; `needs` says which model output it scores."""
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {NEEDS}")

    def decorate(fn: Callable[..., float]) -> Callable[..., float]:
        fn.needs = needs  # type: ignore[attr-defined]
        metrics.register(name, version)(fn)
        return fn

    return decorate


def check_labels(labels, n: int, name: str = "labels") -> np.ndarray:
    """Integer class labels 0..C-1 of length n, at least two classes."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise MetadbError(f"{name}: shape {y.shape}; expected ({n},), one label per row")
    if not np.issubdtype(y.dtype, np.integer):
        _, y = np.unique(y, return_inverse=True)
    if len(np.unique(y)) < 2:
        raise MetadbError(f"{name}: a single class; transferability needs at least 2")
    return y.astype(np.int64)


def check_matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise MetadbError(f"{name}: shape {a.shape}; expected (N, D) with N >= 2")
    if not np.isfinite(a).all():
        raise MetadbError(f"{name}: contains NaN or inf")
    return a


for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
# every metric by name (this rebinds names its module shares, e.g. metadb.metrics.logme)
globals().update({_name: metrics.entry(_name).factory for _name in metrics.names()})
