"""`metadb score`: run transferability metrics for candidate models on one target, and store them.

Three kinds of score, by what they need:

- per-model metrics of the `metadb.metrics` registry (logme, leep, nce, hscore, ...), run on the
  model's features or source-head outputs, which `models.outputs` extracts once and caches;
- `fu`, which needs the model itself (gradients under a triplet loss), run on a seeded subset
  of the target's images;
- candidate-normalised scores, whose terms are min-max normalised across the models scored
  together on the target: `ncti` (Wang et al. 2023) and `lpfu` (Juodelyte et al. 2024's LP x
  FU). They are stored only when two or more models are scored in one call, and a new call
  replaces every earlier computed one of the same target, so the stored set is always one
  normalisation, over the models its `params` name.

All scores of one call are written in one transaction, each with metric version, parameters,
N, seed and runtime. A score that reached its metric's bound because the features interpolate
the target (H-score C - 1, SFDA 1.0 when N <= D; `metadb.metrics.saturation`) is stored with
flags ['saturated'] and the reason in its params, and the call warns in one line; with
`saturated="pca"` such a metric is scored on PCA-reduced features instead (flags ['pca'],
`pca_dims` and the saturated value in params).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metadb import store
from metadb.errors import MetadbError

MODEL_METRICS = {"fu": "1"}  # need the model, not its outputs
CANDIDATE_METRICS = {"ncti": "1", "lpfu": "1"}  # normalised across the candidates of one target
FU_IMAGES = 512  # FU's seeded subset: 6 batches of 85 images through a backward pass
SEED = 0
SATURATED = ("flag", "pca")  # what to do with a score at its bound on interpolating features


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


@dataclass
class ScoreResult:
    columns: list[str]
    rows: list[tuple]
    skipped: list[str]  # under --metrics all: "metric for model: why"
    warnings: list[str] = field(default_factory=list)  # "metric for model: why it says nothing"


def known_metrics() -> list[str]:
    from metadb.metrics import metrics

    return [*metrics.names(), *MODEL_METRICS, "lpfu"]


def resolve_metrics(names: list[str]) -> list[str]:
    """The metric names asked for, validated; `all` is every metric."""
    from metadb.metrics import metrics

    if names == ["all"]:
        return known_metrics()
    for m in names:
        if m not in MODEL_METRICS and m != "lpfu":
            metrics.entry(m)  # an unknown name fails before any extraction, with close matches
    return names


def label_matrix(labels: list[str], names: list[str]) -> np.ndarray:
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


def score(db, target: str, model_names: list[str] | None, metric_names: list[str], split: str = "train",
          device: str | None = None, fu_images: int = FU_IMAGES, seed: int = SEED,
          saturated: str = "flag") -> ScoreResult:
    """Score the chosen models on the target with the chosen metrics; store and return the scores.

    `saturated`: "flag" stores a score at its bound on interpolating features flagged and warns;
    "pca" scores that metric again on PCA-reduced features (the remedy) and stores that instead.

    A metric named explicitly that cannot run (no source head, a multi-label target, FU on a
    target whose triplet loss is 0) is an error; under `all` it is skipped where it cannot run,
    and the result says what was skipped and why.
    """
    if saturated not in SATURATED:
        raise MetadbError(f"saturated: {saturated!r}; expected one of {', '.join(SATURATED)}")
    explicit = metric_names != ["all"]
    wanted = resolve_metrics(metric_names)
    db_path = Path(db) if db is not None else store.default_path()
    con = store.connect(db_path)
    try:
        models = _chosen_models(con, model_names)
        label_type = con.execute("SELECT label_type FROM datasets WHERE name = ?", [target]).fetchone()
        multilabel = bool(label_type and label_type[0] == "multi-label")
        for m in [*wanted]:
            blocked = [(model[0], why) for model in models if (why := applicable(m, model[4], multilabel))]
            if blocked and explicit:
                model, why = blocked[0]
                raise MetadbError(f"{why} ({model} on {target})",
                                  "pick other metrics, or --metrics all to skip what cannot run")
            if len(blocked) == len(models):
                wanted.remove(m)  # where only some models cannot run it, they skip it in _score_models
        normalised = [m for m in wanted if m in CANDIDATE_METRICS]
        if normalised and len(models) < 2:
            if explicit:
                raise MetadbError(f"{', '.join(normalised)}: normalised across the candidate models scored together, "
                                  f"so 2 or more are needed; {len(models)} chosen",
                                  "score two or more models together (--models all)")
            wanted = [m for m in wanted if m not in CANDIDATE_METRICS]
        scores, skipped = _score_models(con, db_path, models, target, split, device, wanted, multilabel, fu_images,
                                        seed, explicit, saturated)
        _store(con, target, scores, [m for m in wanted if m in CANDIDATE_METRICS], seed)
        warnings = [f"{s.metric} for {s.model}: {s.params['saturated']}; stored flagged 'saturated' "
                    f"(--saturated pca scores it on PCA features{', or use shrinkage_hscore' if s.metric == 'hscore' else ''})"
                    for s in scores if "saturated" in s.flags]
        warnings += [f"{s.metric} for {s.model}: {s.params['saturated']}; scored on {s.params['pca_dims']} PCA "
                     f"dimensions instead (flag 'pca')" for s in scores if "pca" in s.flags]
        return ScoreResult(["model", "metric", "value", "n", "runtime_s", "flags"],
                           [(s.model, s.metric, s.value, s.n, round(s.runtime_s, 4), ",".join(s.flags))
                            for s in scores], skipped, warnings)
    finally:
        con.close()


def _chosen_models(con, model_names: list[str] | None) -> list[tuple]:
    rows = con.execute("SELECT name, architecture, weights_ref, weights_sha256, has_source_head FROM models "
                       "ORDER BY name").fetchall()
    unknown = set(model_names or []) - {r[0] for r in rows}
    chosen = [r for r in rows if model_names is None or r[0] in model_names]
    if unknown or not chosen:
        raise MetadbError(f"unknown model(s) {', '.join(sorted(unknown)) or '(none registered)'}",
                          "add them with `metadb models add NAME --arch ARCH`")
    return chosen


def _score_models(con, db_path, models, target, split, device, wanted, multilabel, fu_images, seed,
                  explicit, saturated="flag") -> tuple[list[Score], list[str]]:
    """Every wanted score of every model, and (under `all`) what was skipped and why."""
    from metadb.analyses.score_combination import minmax_product
    from metadb.metrics import metrics
    from metadb.metrics.ncti import combine_terms, ncti_terms
    from metadb.models import outputs

    out: list[Score] = []
    skipped: list[str] = []
    terms: dict[str, tuple] = {}
    values: dict[tuple[str, str], float] = {}
    base = {"split": split}
    label_names = [r[0] for r in con.execute("SELECT label FROM classes WHERE dataset = ? ORDER BY label",
                                             [target]).fetchall()]
    per_model = [m for m in wanted if m not in CANDIDATE_METRICS]
    if "lpfu" in wanted:  # its ingredients are stored too
        per_model += [m for m in ("lp", "fu") if m not in per_model]
    for name, arch, wref, sha, has_head in models:
        f, p, labels = outputs(con, db_path, (name, arch, wref, sha), target, split, device)
        y = label_matrix(labels, label_names) if multilabel else np.unique(labels, return_inverse=True)[1]
        inputs = {"features": f, "source_probs": p, "pseudo_labels": p.argmax(axis=1)}
        n_images = len(y)  # the same images for every model
        for m in per_model:
            if applicable(m, has_head, multilabel):
                continue  # under --metrics all: e.g. LEEP for a model without a source head
            t0 = time.perf_counter()
            try:
                if m == "fu":
                    value, n = _fu(con, (name, arch, wref), target, split, device, fu_images, seed)
                    version, params = MODEL_METRICS[m], {**base, "images": n, "seed": seed}
                else:
                    fn = metrics.entry(m).factory
                    value, n, version, params = float(fn(inputs[fn.needs], y)), len(y), metrics.entry(m).version, base
                    value, params, flags = _check_saturation(m, fn, inputs[fn.needs], y, value, params, saturated)
            except MetadbError as e:
                if explicit:
                    raise
                skipped.append(f"{m} for {name}: {e}")
                continue
            out.append(Score(name, m, value, version, params, n, time.perf_counter() - t0,
                             flags if m != "fu" else []))
            values[(name, m)] = value
        if "ncti" in wanted:
            t0 = time.perf_counter()
            terms[name] = (ncti_terms(f, y, seed=seed), len(y), time.perf_counter() - t0)
    if terms:
        over = list(terms)
        ncti = combine_terms(np.array([terms[m][0] for m in over]))
        out += [Score(m, "ncti", float(v), CANDIDATE_METRICS["ncti"],
                      {**base, "variant": "wang", "normalised_over": over, "terms": list(terms[m][0])},
                      terms[m][1], terms[m][2]) for m, v in zip(over, ncti)]
    if "lpfu" in wanted:
        over = [m[0] for m in models if (m[0], "lp") in values and (m[0], "fu") in values]
        if len(over) < 2:
            skipped.append(f"lpfu: LP and FU for {len(over)} model(s); normalising needs 2 or more")
        else:
            lpfu = minmax_product([np.array([values[(m, k)] for m in over]) for k in ("lp", "fu")])
            out += [Score(m, "lpfu", float(v), CANDIDATE_METRICS["lpfu"], {**base, "normalised_over": over},
                          n_images, 0.0) for m, v in zip(over, lpfu)]
    return out, skipped


def _check_saturation(m: str, fn, f: np.ndarray, y: np.ndarray, value: float, params: dict,
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


def _fu(con, model_row: tuple, target: str, split: str, device: str | None, max_images: int,
        seed: int) -> tuple[float, int]:
    """FU of a model on a seeded sample of at most `max_images` of the target split's images.

    The sample is `numpy.random.default_rng(seed).permutation(sorted ingested image ids)[:max_images]`,
    in that order, so FU's consecutive batches mix the classes as a shuffled DataLoader's would.
    Images are decoded as for feature extraction; an unreadable one is skipped, as at ingest.
    """
    import torch

    from metadb.backbones import pick_device
    from metadb.embeddings import _Images, loader_for
    from metadb.metrics import fu
    from metadb.models import load

    name, arch, wref = model_row
    b = load(name, arch, wref, with_head=False)  # classifier removed: FU scores the embeddings
    ids = [r[0] for r in con.execute("SELECT image_id FROM images WHERE dataset = ? AND (? = '' OR split = ?) "
                                     "ORDER BY image_id", [target, split, split]).fetchall()]
    # a seeded sample in seeded order: FU's batches are consecutive, and a loader's order is by class
    order = {i: k for k, i in enumerate(np.random.default_rng(seed).permutation(ids)[:max_images].tolist())}
    chosen = sorted(((order[i], x, label) for x, i, label, ok in
                     _Images(loader_for(con, target), b.transform(), lambda r: r.image_id in order) if ok),
                    key=lambda c: c[0])
    images, labels = [c[1] for c in chosen], [c[2] for c in chosen]
    if len(images) < 2:
        raise MetadbError(f"{target}: {len(images)} readable image(s) in split {split!r}; FU needs at least 2")
    with torch.enable_grad():
        value = fu(b.model, torch.stack(images), labels, device=pick_device(device))
    return value, len(images)


def _store(con, target: str, scores: list[Score], normalised: list[str], seed: int) -> None:
    """Replace the computed scores these metrics had for these models on the target, in one transaction.

    `seed` is recorded on every score: NCTI's PCA and FU's image subset use it; the rest are deterministic.
    """
    with store.transaction(con):
        for m in normalised:  # a new normalisation replaces the whole earlier set
            con.execute("DELETE FROM scores WHERE target = ? AND metric = ? AND file IS NULL", [target, m])
        con.executemany("DELETE FROM scores WHERE source = ? AND target = ? AND metric = ? AND file IS NULL",
                        [[s.model, target, s.metric] for s in scores])
        con.executemany("""INSERT INTO scores (source, target, metric, value, metric_version, params, n, seed,
                           runtime_s, computed_at, origin, flags)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now(), 'computed', ?)""",
                        [[s.model, target, s.metric, s.value, s.version, json.dumps(s.params), s.n, seed,
                          s.runtime_s, s.flags or None] for s in scores])
