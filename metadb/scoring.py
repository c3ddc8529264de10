"""`metadb score`: run transferability metrics for candidate models on one target, and store them.

Three kinds of score, by what they need:

- per-model metrics of the `metadb.metrics` registry (logme, leep, nce, hscore, ...), run on the
  model's features or source-head outputs, extracted once and cached (metadb.models);
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
`pca_dims` and the saturated value in params). NCTI on no more images than its PCA keeps
components, and H-score on low-rank features (`metadb.metrics.hscore.inverts_rounding`), are stored
with flags ['unstable'] and the reason in params, with one warning line per metric and reason.

Each model is one task on an executor (metadb.executors; metadb.score_tasks runs it): the driver
reads what the tasks need, closes the store while they run (readers and other writers are not
locked out), then records the scores and the cache rows of extracted outputs in one transaction.
A task that fails is one line naming its model, and nothing is stored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metadb import store
from metadb.errors import MetadbError
from metadb.executors import Executor
from metadb.score_tasks import MODEL_METRICS, Score, ScoreTask, ScoreTaskResult, applicable, fu_sample, label_matrix

__all__ = ["MODEL_METRICS", "Score", "ScoreResult", "applicable", "known_metrics", "label_matrix", "resolve_metrics",
           "score"]

CANDIDATE_METRICS = {"ncti": "1", "lpfu": "1"}  # normalised across the candidates of one target
FU_IMAGES = 512  # FU's seeded subset: 6 batches of 85 images through a backward pass
SEED = 0
SATURATED = ("flag", "pca")  # what to do with a score at its bound on interpolating features
COMMIT_WAIT = 60.0  # seconds the commit waits for another writer: minutes of scoring are not thrown away


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


def score(db, target: str, model_names: list[str] | None, metric_names: list[str], split: str = "train",
          device: str | None = None, fu_images: int = FU_IMAGES, seed: int = SEED,
          saturated: str = "flag", executor: str | Executor | None = None,
          workers: int | None = None) -> ScoreResult:
    """Score the chosen models on the target with the chosen metrics; store and return the scores.

    `saturated`: "flag" stores a score at its bound on interpolating features flagged and warns;
    "pca" scores that metric again on PCA-reduced features (the remedy) and stores that instead.
    `executor` (a spec or an Executor, see metadb.executors): where the per-model tasks run; default
    the local process pool of `workers` processes (default one per model, up to the cores).

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
        wanted = _runnable(wanted, models, target, multilabel, explicit)
        tasks = _plan(con, db_path, models, target, split, device, wanted, multilabel, fu_images, seed,
                      explicit, saturated)
    finally:
        con.close()  # no lock while models run: readers and other writers are not shut out
    results = _run(tasks, executor, workers, device)
    scores, skipped = _combine(tasks, results, wanted, split, seed)
    _commit(db_path, tasks, results, scores, [m for m in wanted if m in CANDIDATE_METRICS], seed)
    return ScoreResult(["model", "metric", "value", "n", "runtime_s", "flags"],
                       [(s.model, s.metric, s.value, s.n, round(s.runtime_s, 4), ",".join(s.flags))
                        for s in scores], skipped, _warnings(scores))


def _warnings(scores: list[Score]) -> list[str]:
    """One line per score at its bound (stored flagged, or scored on PCA features instead), one per unstable reason."""
    out = [f"{s.metric} for {s.model}: {s.params['saturated']}; stored flagged 'saturated' "
           f"(--saturated pca scores it on PCA features{', or use shrinkage_hscore' if s.metric == 'hscore' else ''})"
           for s in scores if "saturated" in s.flags]
    out += [f"{s.metric} for {s.model}: {s.params['saturated']}; scored on {s.params['pca_dims']} PCA "
            f"dimensions instead (flag 'pca')" for s in scores if "pca" in s.flags]
    unstable: dict[tuple[str, str], list[str]] = {}  # models sharing a reason (NCTI's is one N) share a line
    for s in scores:
        if "unstable" in s.flags:
            unstable.setdefault((s.metric, s.params["unstable"]), []).append(s.model)
    return out + [f"{metric} for {', '.join(models)}: {why}; stored flagged 'unstable'"
                  for (metric, why), models in unstable.items()]


def _commit(db_path: Path, tasks: list[ScoreTask], results: list[ScoreTaskResult], scores: list[Score],
            normalised: list[str], seed: int) -> None:
    """The scores and the cache rows of extracted outputs, in one transaction, if nothing they came from changed."""
    con = store.connect(db_path, wait=max(store.default_wait(), COMMIT_WAIT))
    try:
        with store.transaction(con):
            _check_unchanged(con, tasks)
            _record_outputs(con, tasks, results)
            _store(con, tasks[0].target, scores, normalised, seed)
    finally:
        con.close()


def _runnable(wanted: list[str], models: list[tuple], target: str, multilabel: bool, explicit: bool) -> list[str]:
    """The metrics that can run on some chosen model; one that cannot and was named explicitly is an error."""
    wanted = [*wanted]
    for m in [*wanted]:
        blocked = [(model[0], why) for model in models if (why := applicable(m, model[4], multilabel))]
        if blocked and explicit:
            model, why = blocked[0]
            raise MetadbError(f"{why} ({model} on {target})",
                              "pick other metrics, or --metrics all to skip what cannot run")
        if len(blocked) == len(models):
            wanted.remove(m)  # where only some models cannot run it, they skip it in their task
    normalised = [m for m in wanted if m in CANDIDATE_METRICS]
    if normalised and len(models) < 2:
        if explicit:
            raise MetadbError(f"{', '.join(normalised)}: normalised across the candidate models scored together, "
                              f"so 2 or more are needed; {len(models)} chosen",
                              "score two or more models together (--models all)")
        wanted = [m for m in wanted if m not in CANDIDATE_METRICS]
    return wanted


def _chosen_models(con, model_names: list[str] | None) -> list[tuple]:
    rows = con.execute("SELECT name, architecture, weights_ref, weights_sha256, has_source_head FROM models "
                       "ORDER BY name").fetchall()
    unknown = set(model_names or []) - {r[0] for r in rows}
    chosen = [r for r in rows if model_names is None or r[0] in model_names]
    if unknown or not chosen:
        raise MetadbError(f"unknown model(s) {', '.join(sorted(unknown)) or '(none registered)'}",
                          "add them with `metadb models add NAME --arch ARCH`")
    return chosen


def _plan(con, db_path: Path, models: list[tuple], target: str, split: str, device: str | None, wanted: list[str],
          multilabel: bool, fu_images: int, seed: int, explicit: bool, saturated: str
          ) -> list[ScoreTask]:
    """One task per model with everything it needs from the store."""
    from metadb.embeddings import loader_for
    from metadb.models import features_path, fresh_outputs

    loader_for(con, target)  # one-line errors: not ingested, or its folder is gone
    layout, root, params = con.execute(
        "SELECT layout, root, params FROM datasets WHERE name = ?", [target]).fetchone()
    label_names = tuple(r[0] for r in con.execute("SELECT label FROM classes WHERE dataset = ? ORDER BY label",
                                                  [target]).fetchall())
    per_model = [m for m in wanted if m not in CANDIDATE_METRICS]
    if "lpfu" in wanted:  # its ingredients are stored too
        per_model += [m for m in ("lp", "fu") if m not in per_model]
    fu_ids: tuple[str, ...] = ()
    if "fu" in per_model:
        fu_ids = fu_sample([r[0] for r in con.execute(
            "SELECT image_id FROM images WHERE dataset = ? AND (? = '' OR split = ?)", [target, split, split]
        ).fetchall()], fu_images, seed)
    tasks = []
    here = Path(os.path.abspath(db_path))  # workers elsewhere (Dask) do not share the driver's working directory
    for name, arch, wref, sha, has_head in models:
        cached, key = fresh_outputs(con, name, sha, target, split)
        tasks.append(ScoreTask(name, arch, wref, bool(has_head), target, split, layout, os.path.abspath(root),
                               params or "{}", label_names, multilabel, tuple(per_model), "ncti" in wanted, explicit,
                               saturated, device, seed, fu_ids, cached and os.path.abspath(cached),
                               str(features_path(here, name, target, split)), key))
    return tasks


def _combine(tasks: list[ScoreTask], results: list[ScoreTaskResult], wanted: list[str], split: str,
             seed: int) -> tuple[list[Score], list[str]]:
    """Every model's scores in model order, then the candidate-normalised ones computed across them."""
    from metadb.analyses.score_combination import minmax_product
    from metadb.metrics.ncti import combine_terms

    out = [s for r in results for s in r.scores]
    skipped = [why for r in results for why in r.skipped]
    base = {"split": split}
    terms = {t.model: r for t, r in zip(tasks, results) if r.ncti_terms is not None}
    if terms:
        over = list(terms)
        ncti = combine_terms(np.array([terms[m].ncti_terms for m in over]))
        out += [_ncti_score(m, float(v), terms[m], {**base, "variant": "wang", "normalised_over": over})
                for m, v in zip(over, ncti)]
    if "lpfu" in wanted:
        values = {(s.model, s.metric): s.value for s in out}
        over = [t.model for t in tasks if (t.model, "lp") in values and (t.model, "fu") in values]
        if len(over) < 2:
            skipped.append(f"lpfu: LP and FU for {len(over)} model(s); normalising needs 2 or more")
        else:
            lpfu = minmax_product([np.array([values[(m, k)] for m in over]) for k in ("lp", "fu")])
            n_images = results[0].n_images  # the same images for every model
            out += [Score(m, "lpfu", float(v), CANDIDATE_METRICS["lpfu"], {**base, "normalised_over": over},
                          n_images, 0.0) for m, v in zip(over, lpfu)]
    return out, skipped


def _ncti_score(model: str, value: float, r: ScoreTaskResult, params: dict) -> Score:
    """One candidate's NCTI; flagged 'unstable' (the reason in params) when its PCA keeps every image."""
    why = {"unstable": r.ncti_degenerate} if r.ncti_degenerate else {}
    return Score(model, "ncti", value, CANDIDATE_METRICS["ncti"], {**params, "terms": list(r.ncti_terms), **why},
                 r.n_images, r.ncti_seconds, list(why))


def _run(tasks: list[ScoreTask], executor: str | Executor | None, workers: int | None,
         device: str | None) -> list[ScoreTaskResult]:
    """Every task's result in task order; a failed task is one line naming its model."""
    from dataclasses import replace

    from metadb.executors import LocalPool, TaskFailed, using
    from metadb.score_tasks import score_model

    workers = workers or min(len(tasks), os.cpu_count() or 1)
    results: list[ScoreTaskResult | None] = [None] * len(tasks)
    # spawned, not forked: the driver may have run torch or scikit-learn's OpenMP code (a notebook, the demo),
    # and a forked child of such a process hangs at its first parallel region
    with using(executor, workers, start_method="spawn") as ex:
        if isinstance(ex, LocalPool) and ex.workers > 1:  # processes sharing this machine's cores: no oversubscription
            tasks = [replace(t, threads=max(1, (os.cpu_count() or 1) // ex.workers)) for t in tasks]
        # a GPU each on a cluster whose workers declare them (a LocalCluster declares none), as finetune asks
        gpu = {"GPU": 1} if (device or "").startswith("cuda") and not ex.name.startswith("local") else None
        try:
            for k, res in ex.run(score_model, tasks, resources=gpu):
                results[k] = res
        except TaskFailed as e:
            t = tasks[e.index]
            raise MetadbError(f"scoring {t.model} on {t.target} failed after {e.attempts} attempt(s): "
                              f"{type(e.error).__name__}: {e.error}", "nothing was stored") from None
    return results  # type: ignore[return-value]


def _check_unchanged(con, tasks: list[ScoreTask]) -> None:
    """Refuse to store scores of data or weights that changed while the tasks ran (a re-ingest, a re-added model)."""
    from metadb.models import fresh_outputs

    for t in tasks:
        sha = con.execute("SELECT weights_sha256 FROM models WHERE name = ?", [t.model]).fetchone()
        _, key = fresh_outputs(con, t.model, sha[0] if sha else None, t.target, t.split)
        if sha is None or key != t.cache_key:
            raise MetadbError(f"{t.target} or model {t.model} changed while it was being scored; nothing was stored",
                              "run the same score command again")


def _record_outputs(con, tasks: list[ScoreTask], results: list[ScoreTaskResult]) -> None:
    """model_features rows for the outputs workers extracted, keyed by the data and weights they came from."""
    from metadb.models import record_outputs

    for t, r in zip(tasks, results):
        if r.extracted is not None:
            path, n, dim = r.extracted
            record_outputs(con, t.model, t.target, t.split, n, dim, path, t.cache_key)


def _store(con, target: str, scores: list[Score], normalised: list[str], seed: int) -> None:
    """Replace the computed scores these metrics had for these models on the target (in the caller's transaction).

    `seed` is recorded on every score: NCTI's PCA and FU's image subset use it; the rest are deterministic.
    """
    for m in normalised:  # a new normalisation replaces the whole earlier set
        con.execute("DELETE FROM scores WHERE target = ? AND metric = ? AND file IS NULL", [target, m])
    con.executemany("DELETE FROM scores WHERE source = ? AND target = ? AND metric = ? AND file IS NULL",
                    [[s.model, target, s.metric] for s in scores])
    con.executemany("""INSERT INTO scores (source, target, metric, value, metric_version, params, n, seed,
                       runtime_s, computed_at, origin, flags)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, now(), 'computed', ?)""",
                    [[s.model, target, s.metric, s.value, s.version, json.dumps(s.params), s.n, seed,
                      s.runtime_s, s.flags or None] for s in scores])
