"""Transferability metrics: plain functions of arrays, one module each, registered by name.

`from metadb.metrics import logme, leep, nce, hscore` gives functions usable without a store;
`metrics` lists them with what each consumes: target features (`needs="features"`), the source
head's softmax on the target images (`"source_probs"`) or its argmax (`"pseudo_labels"`).
Inputs are validated once, at the function boundary, and a bad one raises a one-line
`MetadbError` naming the argument, the shape found and what was required.

Each metric is checked in tests/test_metrics.py against figures produced by its authors'
published code on fixed inputs.
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


def register_metric(name: str, version: str = "1", needs: str = "features", multilabel: bool = False,
                    saturates: bool = False, bound: Callable[[int], float] | None = None,
                    unstable: Callable[[np.ndarray], str | None] | None = None):
    """Register a metric function; `needs` says which model output it scores.

    The function is called as `fn(array, labels, **params)` and returns a float, higher meaning
    more transferable. `multilabel` says it also takes an (N, L) 0/1 label matrix. `saturates`
    says its value stops depending on the labels when the features interpolate the target (a
    linear model fitted in-sample), and `bound(C)` is the value it then takes for a C-class target
    (H-score C - 1, SFDA 1.0); see `metadb.metrics.saturation`. `unstable(features)` says in one
    line why the value would follow rounding on these features (None when it does not).
    """
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {NEEDS}, not {needs!r}")

    def decorate(fn: Callable[..., float]) -> Callable[..., float]:
        fn.needs = needs  # type: ignore[attr-defined]
        fn.multilabel = multilabel  # type: ignore[attr-defined]
        fn.saturates = saturates or bound is not None  # type: ignore[attr-defined]
        fn.bound = bound  # type: ignore[attr-defined]
        fn.unstable = unstable  # type: ignore[attr-defined]
        metrics.register(name, version)(fn)
        return fn

    return decorate


def check_labels(labels, n: int, name: str = "labels") -> np.ndarray:
    """Class labels as contiguous integers 0..C-1 (C >= 2) for n rows.

    Any hashable labels are accepted (strings, non-contiguous integers); they are renumbered in
    sorted order, so class c is the c-th smallest label, as `np.unique` orders them.
    """
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise MetadbError(f"{name}: shape {y.shape}; expected ({n},), one class label per row")
    classes, y = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise MetadbError(f"{name}: shape {(n,)} holds a single class; transferability needs at least 2")
    return y.astype(np.int64)


def check_multilabel(labels, n: int, name: str = "labels") -> np.ndarray:
    """A multi-label target: an (n, L) matrix of 0/1 with L >= 1, as float64."""
    y = np.asarray(labels)
    if y.ndim != 2 or y.shape[0] != n or y.shape[1] < 1:
        raise MetadbError(f"{name}: shape {y.shape}; expected ({n}, L), one 0/1 column per label")
    if not np.isin(y, (0, 1)).all():
        raise MetadbError(f"{name}: shape {y.shape} has values other than 0 and 1; a multi-label target is 0/1")
    return y.astype(np.float64)


def check_matrix(x, name: str, min_rows: int = 2) -> np.ndarray:
    """A finite (N, D) float64 matrix with N >= min_rows."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise MetadbError(f"{name}: not a numeric array; expected (N, D) numbers") from None
    if a.ndim != 2 or a.shape[0] < min_rows or a.shape[1] < 1:
        raise MetadbError(f"{name}: shape {a.shape}; expected (N, D) with N >= {min_rows} and D >= 1")
    if not np.isfinite(a).all():
        raise MetadbError(f"{name}: shape {a.shape} contains NaN or inf; expected finite numbers")
    return a


def class_means(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(C x D) mean of the rows of f in each class 0..C-1."""
    means = np.zeros((y.max() + 1, f.shape[1]))
    np.add.at(means, y, f)
    return means / np.bincount(y)[:, None]


def check_min_per_class(y: np.ndarray, k: int, metric: str) -> None:
    """Every class needs k images (for a class mean, a variance, a neighbour...)."""
    counts = np.bincount(y)
    if counts.min() < k:
        raise MetadbError(f"labels: class {int(counts.argmin())} has {int(counts.min())} image(s); "
                          f"{metric} needs at least {k} per class")


for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
# every registered metric by name (this rebinds names a module shares, e.g. metadb.metrics.logme)
globals().update({_name: metrics.entry(_name).factory for _name in metrics.names()})
from metadb.metrics.fu import fu  # noqa: E402  (needs the model, so it is not in the registry)
from metadb.metrics.ncti import ncti_scores, ncti_terms  # noqa: E402

__all__ = ["metrics", "register_metric", "check_labels", "check_matrix", "fu", "ncti_terms", "ncti_scores",
           *metrics.names()]
