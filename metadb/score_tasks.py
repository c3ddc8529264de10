"""The worker side of `metadb score`: one task per candidate model, run without the store.

The driver (metadb.scoring) reads everything a model's scores need from the store — the target's
loader spec and label names, the model's row, the path of its cached outputs when they are still
fresh, FU's seeded image ids — and ships it as a `ScoreTask`. A worker (a local process, a Dask
worker, or the driver itself when one process is asked for) extracts the model's outputs when not
cached, writing them under `<db>.features/`, and runs every per-model metric, FU and NCTI's
per-model terms. It returns `Score` records; only the driver writes the store, in one transaction
with the cache rows of what workers extracted.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from metadb.errors import MetadbError

MODEL_METRICS = {"fu": "1"}  # need the model, not its outputs


@dataclass
class Score:
    model: str
    metric: str
    value: float
    version: str
    params: dict
    n: int
    runtime_s: float
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScoreTask:
    """Everything one model's scores need, read by the driver: small, picklable, no store handle."""

    model: str
    architecture: str
    weights_ref: str
    has_head: bool
    target: str
    split: str
    layout: str  # the target's loader: layout, root and parameters as stored by ingest
    root: str
    loader_params: str
    label_names: tuple[str, ...]
    multilabel: bool
    metrics: tuple[str, ...]  # per-model metrics (and FU), in the order they are scored
    ncti: bool  # also compute NCTI's raw per-model terms (normalised by the driver)
    explicit: bool  # metrics named explicitly: a metric that cannot run fails the task; under `all` it is skipped
    saturated: str
    device: str | None
    seed: int
    fu_ids: tuple[str, ...]  # FU's seeded sample of image ids, in the seeded order
    cached: str | None  # the model's outputs Parquet when still fresh, else None: extract and write `features_out`
    features_out: str
    cache_key: str  # the data and weights fingerprint the outputs come from (model_features.fingerprint)
    threads: int = 0  # torch and BLAS threads in this worker (0: leave the process's setting)


@dataclass
class ScoreTaskResult:
    scores: list[Score]
    skipped: list[str]  # under `all`: "metric for model: why"
    ncti_terms: tuple[float, float, float] | None
    ncti_degenerate: str | None  # why the terms cannot be trusted (metadb.metrics.ncti.degenerate), or None
    n_images: int
    ncti_seconds: float
    extracted: tuple[str, int, int] | None  # (path, n, dim) of outputs this task wrote, for model_features


def label_matrix(labels: list[str], names: list[str] | tuple[str, ...]) -> np.ndarray:
    """(N, L) 0/1 matrix of multi-label positives ('a|b' strings) over the label names."""
    index = {n: j for j, n in enumerate(names)}
    y = np.zeros((len(labels), len(names)))
    for i, lab in enumerate(labels):
        for name in filter(None, lab.split("|")):
            y[i, index[name]] = 1.0
    return y


def applicable(metric: str, has_head: bool, multilabel: bool) -> str | None:
    """Why a metric cannot score this model on this target, or None when it can."""
    from metadb.metrics import metrics

    if multilabel and not (metric in metrics and metrics.entry(metric).factory.multilabel):
        return f"{metric} scores single-label targets only (logme scores a multi-label target, label by label)"
    if metric in metrics and metrics.entry(metric).factory.needs != "features" and not has_head:
        return f"{metric} needs the model's source head"
    return None


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """At most n torch, BLAS and OpenMP threads: pool workers sharing the cores must not oversubscribe them."""
    if n <= 0:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):  # BLAS and OpenMP (scikit-learn's neighbours, PCA)
            yield
    finally:
        torch.set_num_threads(before)


def score_model(task: ScoreTask) -> ScoreTaskResult:
    """Worker: one model's outputs (cached or extracted), then each of its metrics, FU and NCTI terms."""
    try:
        return _score_model(task)
    except MetadbError as e:  # one line that names the model, whichever step failed
        if task.model in e.message:
            raise
        raise MetadbError(f"model {task.model}: {e.message}", e.hint) from None


def _score_model(task: ScoreTask) -> ScoreTaskResult:
    from metadb.loaders import create_loader
    from metadb.models import extract, read_outputs, write_outputs

    if not os.access(task.root, os.R_OK):
        raise MetadbError(f"worker on {socket.gethostname()} cannot open {task.target}'s data root {task.root}",
                          "every worker must see the data at the same path (a shared filesystem)")
    with _threads(task.threads):
        loader = create_loader(task.layout, task.root, **json.loads(task.loader_params or "{}"))
        extracted = None
        if task.cached:
            f, p, labels = read_outputs(task.cached)
        else:
            f, p, labels = extract((task.model, task.architecture, task.weights_ref), loader, task.split,
                                   task.device, task.target)
            write_outputs(Path(task.features_out), f, p, labels)
            extracted = (task.features_out, len(labels), f.shape[1])
        y = label_matrix(labels, task.label_names) if task.multilabel else np.unique(labels, return_inverse=True)[1]
        scores, skipped = _metrics(task, loader, f, p, y)
        terms, why, t_ncti = None, None, 0.0
        if task.ncti:
            from metadb.metrics.ncti import degenerate, ncti_terms

            t0 = time.perf_counter()
            terms = ncti_terms(f, y, seed=task.seed)
            why = degenerate(*f.shape)
            t_ncti = time.perf_counter() - t0
    return ScoreTaskResult(scores, skipped, terms, why, len(y), t_ncti, extracted)


def _metrics(task: ScoreTask, loader, f: np.ndarray, p: np.ndarray, y: np.ndarray) -> tuple[list[Score], list[str]]:
    """Every per-model score of the task, and (under `all`) what was skipped and why."""
    from metadb.metrics import metrics

    inputs = {"features": f, "source_probs": p, "pseudo_labels": p.argmax(axis=1)}
    base = {"split": task.split}
    out: list[Score] = []
    skipped: list[str] = []
    for m in task.metrics:
        if applicable(m, task.has_head, task.multilabel):
            continue  # under --metrics all: e.g. LEEP for a model without a source head
        t0 = time.perf_counter()
        flags: list[str] = []
        try:
            if m == "fu":
                value, n = fu_on_sample(task, loader)
                version, params = MODEL_METRICS[m], {**base, "images": n, "seed": task.seed}
            else:
                fn = metrics.entry(m).factory
                value, n, version, params = float(fn(inputs[fn.needs], y)), len(y), metrics.entry(m).version, base
                value, params, flags = check_saturation(m, fn, inputs[fn.needs], y, value, params, task.saturated)
                params, flags = check_stability(fn, inputs[fn.needs], params, flags)
        except MetadbError as e:
            if task.explicit:
                raise MetadbError(f"{m} for {task.model}: {e.message}", e.hint) from None
            skipped.append(f"{m} for {task.model}: {e}")
            continue
        out.append(Score(task.model, m, value, version, params, n, time.perf_counter() - t0, flags))
    return out, skipped


def check_saturation(m: str, fn, f: np.ndarray, y: np.ndarray, value: float, params: dict,
                     saturated: str) -> tuple[float, dict, list[str]]:
    """(value, params, flags) of a score, flagged or remedied when it sits at its metric's bound."""
    from metadb.metrics.saturation import pca_dims, reduce, saturation

    if fn.needs != "features" or not fn.saturates:
        return value, params, []
    n_classes = int(y.max()) + 1 if y.ndim == 1 else 2  # a multi-label target: L binary ones
    why = saturation(m, fn, f, n_classes, value)
    if why is None:
        return value, params, []
    if saturated == "flag":
        return value, {**params, "saturated": why}, ["saturated"]
    remedied = float(fn(reduce(f, n_classes), y))
    return remedied, {**params, "pca_dims": min(pca_dims(len(f), n_classes), f.shape[1]),
                      "saturated_value": value, "saturated": why}, ["pca"]


def check_stability(fn, array: np.ndarray, params: dict, flags: list[str]) -> tuple[dict, list[str]]:
    """(params, flags) with 'unstable' and its reason added when the metric says rounding decides its value.

    A saturated score already says why it carries no information, so it is not flagged twice.
    """
    why = fn.unstable(array) if fn.unstable and not flags else None
    return ({**params, "unstable": why}, ["unstable"]) if why else (params, flags)


def fu_sample(image_ids: list[str], max_images: int, seed: int) -> tuple[str, ...]:
    """FU's images: `numpy.random.default_rng(seed).permutation(sorted image ids)[:max_images]`, in that order.

    Seeded order, not the loader's (which is by class): FU's batches are consecutive, so they mix the
    classes as a shuffled DataLoader's would.
    """
    return tuple(np.random.default_rng(seed).permutation(sorted(image_ids))[:max_images].tolist())


def fu_on_sample(task: ScoreTask, loader) -> tuple[float, int]:
    """(FU, images used) of the task's model on its seeded sample."""
    return fu_on_images((task.model, task.architecture, task.weights_ref), loader, task.fu_ids, task.target,
                        task.split, task.device)


def fu_on_images(model_row: tuple, loader, image_ids: tuple[str, ...], target: str, split: str,
                 device: str | None) -> tuple[float, int]:
    """(FU, images used) of a registered model on the loader's images `image_ids`, in that order.

    Images are decoded as for feature extraction; an unreadable one is skipped, as at ingest.
    """
    import torch

    from metadb.backbones import pick_device
    from metadb.image_batches import ImageStream
    from metadb.metrics import fu
    from metadb.models import load

    name, arch, weights_ref = model_row[:3]
    b = load(name, arch, weights_ref, with_head=False)  # classifier removed: FU scores the embeddings
    order = {i: k for k, i in enumerate(image_ids)}
    chosen = sorted(((order[i], x, label) for x, i, label, ok in
                     ImageStream(loader, b.transform(), lambda r: r.image_id in order) if ok), key=lambda c: c[0])
    images, labels = [c[1] for c in chosen], [c[2] for c in chosen]
    if len(images) < 2:
        raise MetadbError(f"{target}: {len(images)} readable image(s) in split {split!r}; FU needs at least 2")
    with torch.enable_grad():
        value = fu(b.model, torch.stack(images), labels, device=pick_device(device))
    return value, len(images)
