"""The report's sections, each read from the store through `metadb.api` (read-only handles) and the
query macros, each returning None when the store holds nothing for it.

Tables render whatever columns a query returns, so a column added to `best_source` (origin,
features_known, ...) shows up here without an edit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from metadb import api
from metadb.errors import MetadbError
from metadb.report import charts
from metadb.report.html import Section, code, details, figure, note, slug, table


@dataclass
class Context:
    """What every section needs: the store, the optional target, and what the provenance section lists."""

    db: Path
    target: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # section title -> what its numbers came from

    def sql(self, statement: str) -> tuple[list[str], list[tuple]]:
        return api.sql(statement, self.db)

    def has_table(self, name: str) -> bool:
        return bool(self.sql(f"SELECT 1 FROM information_schema.tables WHERE table_name = {quote(name)}")[1])


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- datasets ---------------------------------------------------------------------------------
def datasets(ctx: Context) -> Section | None:
    features = [c for c, *_ in ctx.sql("DESCRIBE meta_features_wide")[1] if c != "dataset"]
    wide = "".join(f", w.{ident(c)}" for c in features)
    where = ""
    if ctx.target:
        names = {ctx.target, *(r[1] for r in api.query("best_source", ctx.db, target=ctx.target)[1])}
        where = "WHERE d.name IN (" + ", ".join(map(quote, sorted(names))) + ")"
    cols, rows = ctx.sql(f"""SELECT d.name, d.title, d.modality, d.anatomy, d.domain, d.label_type, d.licence,
                                    d.derived_from AS lineage, d.n_images AS images, d.n_classes AS classes,
                                    d.is_stub AS stub{wide}
                             FROM datasets d LEFT JOIN meta_features_wide w ON w.dataset = d.name {where}
                             ORDER BY d.name""")
    if not rows:
        return None
    stubs = sum(1 for r in rows if r[cols.index("stub")])
    ctx.sources["Datasets"] = "the datasets table (catalog metadata, lineage) and the meta_features_wide view"
    caption = (f"{len(rows)} datasets; {stubs} known only by name from imported evidence (stub = yes: catalog "
               f"metadata, no images ingested). Meta-features: {len(features)} columns from "
               f"{code('meta_features_wide')}. Click a column header to sort.")
    return Section("datasets", "Datasets", table(cols, rows, caption, "datasets-table"))


# --- similarity -------------------------------------------------------------------------------
def similarity(ctx: Context) -> Section | None:
    pairs = ctx.sql("SELECT DISTINCT measure, coalesce(backbone, '') FROM similarities ORDER BY 1, 2")[1]
    parts = []
    for measure, backbone in pairs:
        _, rows = api.query("similarity_matrix", ctx.db, measure=measure, backbone=backbone)
        names = sorted({r[0] for r in rows} | {r[1] for r in rows})
        if len(names) < 2 or (ctx.target and ctx.target not in names):
            continue
        index = {n: i for i, n in enumerate(names)}
        d = np.full((len(names), len(names)), np.nan)
        for a, b, v, *_ in rows:
            d[index[a], index[b]] = np.nan if v is None else v
        off = ~np.eye(len(names), dtype=bool)
        missing = int(np.isnan(d[off]).sum()) // 2
        if missing:
            order = list(range(len(names)))
            how = (f"{missing} of {len(names) * (len(names) - 1) // 2} pairs have no stored distance (hatched), "
                   "so rows are in name order, not clustered")
        else:
            order = charts.cluster_order(names, np.nan_to_num(d))
            how = "rows in average-linkage order, as <code>metadb similarity --plot</code> draws them"
        d, shown = d[np.ix_(order, order)], [names[i] for i in order]
        label = measure + (f" ({backbone})" if backbone else "")
        svg = charts.heatmap(shown, d, label)
        parts.append(f'<h3 id="similarity-{slug(label)}">{escape(label)}</h3>' + figure(
            svg, f"{escape(label)} distance between {len(names)} datasets (lower = more alike; hover a cell for "
                 f"its value); {how}. From {code(f'similarity_matrix(measure := {quote(measure)}, backbone := {quote(backbone)})')}."))
    if not parts:
        return None
    ctx.sources["Similarity"] = "similarity_matrix(measure, backbone) over the similarities table"
    return Section("similarity", "Similarity", "".join(parts))


# --- best source ------------------------------------------------------------------------------
def targets(ctx: Context) -> list[str]:
    if ctx.target:
        return [ctx.target]
    # confounded variants (metadb confound) have their own section, not a best-source ranking
    return [r[0] for r in ctx.sql("""SELECT target FROM outcomes WHERE is_selected
                                       AND target NOT IN (SELECT name FROM datasets WHERE layout = 'confound') UNION
                                     SELECT target FROM predictions ORDER BY 1""")[1]]


def best_source(ctx: Context) -> Section | None:
    parts = []
    for t in targets(ctx):
        cols, rows = api.query("best_source", ctx.db, target=t)
        if not rows:
            continue
        get = {c: [r[k] for r in rows] for k, c in enumerate(cols)}
        ranked = [k for k, e in enumerate(get["evidence"]) if e in ("outcome", "predicted")]
        metric = get["metric"][ranked[0]] if ranked else None
        plotted = [k for k in ranked if get["metric"][k] == metric]  # one axis, one metric
        body = ""
        if plotted:
            body += figure(charts.ranked([get["source"][k] for k in plotted], [get["value"][k] for k in plotted],
                                         [get["std"][k] for k in plotted], [get["evidence"][k] for k in plotted],
                                         metric, t),
                           f"Candidate sources for {escape(t)}, best first, by {escape(metric)}: circles are "
                           "observed outcomes (mean over folds or selected runs), triangles predictions."
                           + (" Sources ranked by distance only are in the table, not on this axis."
                              if len(ranked) < len(rows) else "")
                           + (f" {len(ranked) - len(plotted)} rows in another metric than {escape(metric)} are in "
                              "the table only." if len(plotted) < len(ranked) else ""))
        body += table(cols, rows, f"Best source for {escape(t)}: {code(f'best_source({quote(t)})')}, "
                                  "best first, with the evidence tier of each row.", f"best-source-{slug(t)}")
        parts.append(f'<h3 id="best-{slug(t)}">{escape(t)}</h3><div class="pair">{body}</div>')
    if not parts:
        return None
    ctx.sources["Best source"] = "best_source(target): outcomes (is_selected) beat predictions beat distances"
    return Section("best-source", "Best source per target", "".join(parts))


# --- metric agreement -------------------------------------------------------------------------
def metric_agreement(ctx: Context) -> Section | None:
    metrics = [r[0] for r in ctx.sql("SELECT DISTINCT metric FROM scores ORDER BY 1")[1]]
    results, skipped = {}, []
    for m in metrics:
        try:
            cols, rows = api.query("metric_agreement", ctx.db, metric=m)
        except MetadbError as e:
            skipped.append(f"{m} ({str(e).splitlines()[0]})")
            continue
        results[m] = {r[0]: r for r in rows}
    if ctx.target:
        results = {m: by for m, by in results.items() if ctx.target in by}
    if not results:
        return None
    shown = sorted({t for by in results.values() for t in by if t != "(mean)"})
    if ctx.target:
        shown = [ctx.target]
    shown.append("(mean)")
    tau = np.array([[_tau(results[m].get(t)) for t in shown] for m in results])
    body = figure(charts.agreement(list(results), shown, tau, "Metric agreement with fine-tuning"),
                  "Weighted Kendall τ (scipy weightedtau defaults, as Juodelyte et al. 2024) between each "
                  "transferability score and the observed outcomes of the candidate sources, per target; the "
                  "last column is the mean over targets (bold). Darker = weaker agreement; – = undefined.")
    long = [(m, *r) for m, by in results.items() for t, r in by.items() if t in shown]
    body += details(f"The table: {len(long)} rows", table(
        ["metric", *cols], long, f"Per metric and target: {code('metric_agreement(metric)')} (n_sources excludes "
                                 "the target itself; the (mean) row counts targets).", "metric-agreement-table"))
    if skipped:
        body += note("Not evaluated: " + escape("; ".join(skipped)))
    ctx.sources["Metric agreement"] = "metric_agreement(metric) for every metric in the scores table"
    return Section("metric-agreement", "Metric agreement", body)


def _tau(row: tuple | None) -> float:
    return float("nan") if row is None or row[2] is None else float(row[2])


# --- predictor evaluation ---------------------------------------------------------------------
def predictors(ctx: Context) -> Section | None:
    cols, rows = ctx.sql("""SELECT predictor_id, model, outcome_metric, n_train, fitted_at, params
                            FROM predictors ORDER BY fitted_at DESC""")
    if not rows:
        return None
    from metadb.predictor_evaluation import evaluate

    body = table(cols[:-1], [r[:-1] for r in rows], "Stored predictors, newest first (the newest of a metric "
                                                    "answers best_source's predicted tier).", "predictors-table")
    seen = set()
    for pid, model, metric, *_, params in rows:
        if (model, metric) in seen:
            continue
        seen.add((model, metric))
        seed = json.loads(params or "{}").get("seed", 0)
        try:
            # per target for one target's view; else each method's means, best first, beside every stored score
            ecols, erows = evaluate(ctx.db, (model,), metric, seed if isinstance(seed, int) else 0,
                                    per_target=bool(ctx.target))
        except MetadbError as e:
            body += note(f"{escape(model)} on {escape(metric)}: not evaluated ({escape(str(e).splitlines()[0])})")
            continue
        if ctx.target:
            erows = [r for r in erows if r[2] == ctx.target]
        body += table(ecols, erows, f"Leave-one-target-out evaluation of {escape(model)} predicting "
                                    f"{escape(metric)} (refitted without each target) beside every stored score "
                                    "and distance ranking the same sources: weighted τ, top-1 hit, regret.",
                      f"predictor-eval-{slug(model)}-{slug(metric)}")
    ctx.sources["Predictor evaluation"] = "metadb.predictor_evaluation.evaluate (leave-one-target-out refits)"
    return Section("predictors", "Predictor evaluation", body)


# --- runs -------------------------------------------------------------------------------------
RUN_COLUMNS = ["run_id", "kind", "source", "target", "architecture", "protocol", "fold", "seed", "status",
               "best_epoch", "epochs_run", "val_auc", "val_loss", "test_auc", "wall_s", "finished_at"]


def runs(ctx: Context) -> Section | None:
    """metadb's own fine-tuning trials, when the store has a `runs` table (schema 014) with rows."""
    if not ctx.has_table("runs"):
        return None
    have = [c for c, *_ in ctx.sql("DESCRIBE runs")[1]]
    shown = [c for c in RUN_COLUMNS if c in have] or have
    where = f"WHERE target = {quote(ctx.target)}" if ctx.target and "target" in have else ""
    cols, rows = ctx.sql(f"SELECT {', '.join(map(ident, shown))} FROM runs {where} ORDER BY ALL")
    if not rows:
        return None
    body = ""
    if "curves_path" in have:
        body += _curves(ctx, where)
    body += table(cols, rows, f"{len(rows)} fine-tuning trials from the {code('runs')} table.", "runs-table")
    ctx.sources["Runs"] = "the runs table and each trial's curves Parquet file"
    return Section("runs", "Runs", body)


def _curves(ctx: Context, where: str) -> str:
    import pyarrow.parquet as pq

    found = ctx.sql(f"SELECT target, source, fold, curves_path FROM runs {where} ORDER BY ALL")[1]
    panels: dict[str, list] = {}
    unreadable = 0
    for target, source, fold, path in found:
        if not path:
            continue
        p = Path(path) if Path(path).is_absolute() else ctx.db.parent / path
        try:
            t = pq.read_table(p).to_pydict()
        except OSError:
            unreadable += 1
            continue
        y = "val_auc" if "val_auc" in t else "val_loss" if "val_loss" in t else None
        if y is None or "epoch" not in t:
            unreadable += 1
            continue
        vals = [math.nan if v is None else v for v in t[y]]
        panels.setdefault(target, []).append((f"{source} f{fold}", t["epoch"], vals, y))
    if not panels:
        return note(f"{unreadable} curve files could not be read.") if unreadable else ""
    metric = next(iter(panels.values()))[0][3]
    svg = charts.curves({t: [line[:3] for line in lines if line[3] == metric] for t, lines in panels.items()},
                        metric, "Learning curves")
    return figure(svg, f"Validation {escape(metric)} per epoch of each trial (line = source and fold), one panel "
                       "per target." + (f" {unreadable} curve files could not be read." if unreadable else ""))


# --- provenance -------------------------------------------------------------------------------
def provenance(ctx: Context, version: str, generated: str) -> Section:
    schema = ctx.sql("SELECT max(version) FROM schema_migrations")[1][0][0]
    facts = [("metadb version", version), ("store", str(ctx.db.resolve())), ("schema version", schema),
             ("generated (UTC)", generated), ("target", ctx.target or "all")]
    body = table(["fact", "value"], facts, "This report.", "provenance-facts", numeric_hint=False)
    body += table(["section", "computed from"], list(ctx.sources.items()),
                  "What each section's numbers come from (each caption names its query).", "provenance-sections",
                  numeric_hint=False)
    cols, rows = ctx.sql("""SELECT 'outcomes' AS "table", origin, count(*) AS rows FROM outcomes GROUP BY ALL
                            UNION ALL SELECT 'scores', origin, count(*) FROM scores GROUP BY ALL
                            UNION ALL SELECT 'similarities', origin, count(*) FROM similarities GROUP BY ALL
                            ORDER BY 1, 2""")
    if rows:
        body += table(cols, rows, "Stored rows by origin: import = a user's file, published:&lt;pack&gt;@&lt;version&gt; = "
                                  "an evidence pack shipped with metadb, computed = metadb's own measures, run = "
                                  "metadb's own fine-tuning.", "provenance-origins")
    packs = _packs({r[1] for r in rows})
    if packs[1]:
        body += table(*packs, "Evidence packs the store holds rows from: cite these.", "provenance-packs",
                      numeric_hint=False)
    cols, rows = ctx.sql("""SELECT dataset, command, metadb_version, status, images_ok, images_failed, ended_at
                            FROM ingest_runs ORDER BY ended_at""")
    if rows:
        body += table(cols, rows, "Ingest runs (meta-features and per-image rows).", "provenance-ingests")
    return Section("provenance", "Provenance", body)


def _packs(origins: set[str]) -> tuple[list[str], list[tuple]]:
    from metadb.published.packs import all_packs

    rows = [(p.origin, p.manifest.get("study", ""), p.manifest.get("licence", ""), p.manifest.get("citation", ""))
            for p in all_packs() if p.origin in origins]
    return ["origin", "study", "licence", "citation"], rows
