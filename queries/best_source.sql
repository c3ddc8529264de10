/*
name: best_source
question: Which source datasets or models should I transfer from for this target, best first, and on what evidence?
params:
  target VARCHAR                  the target dataset
  metric VARCHAR = NULL           outcome metric to rank by (default: the target's most reported one)
  measure VARCHAR = NULL          similarity measure for sources with neither outcome nor prediction
  exclude_lineage BOOLEAN = false also drop sources derived from the target (or it from them), sharing its parent, or sharing images with it
columns:
  rank BIGINT                     1 = best
  source VARCHAR                  candidate source
  evidence VARCHAR                outcome (observed), predicted (stored predictor), or similarity:<measure>
  value DOUBLE                    mean outcome, predicted outcome, or distance (lower is closer)
  std DOUBLE                      sample std of the outcome over folds, seeds or selected runs
  n BIGINT                        outcome rows averaged
  metric VARCHAR                  outcome metric of value
*/
CREATE OR REPLACE MACRO best_source(target, metric := NULL, measure := NULL, exclude_lineage := false) AS TABLE
-- Evidence tiers: an observed outcome beats a prediction, which beats a similarity. Unqualified
-- `target`, `metric`, `measure` and `exclude_lineage` are the parameters; columns are always
-- qualified. Each table is read once (the macro is planned on every call, and planning, not
-- execution, is most of its cost).
WITH sel AS (  -- the target's ground-truth outcomes from other sources
    SELECT o.source, o.metric, o.value FROM outcomes o
    WHERE o.target = target AND o.is_selected AND o.source <> target AND (metric IS NULL OR o.metric = metric)
),
chosen AS (  -- the metric asked for, else the one the target has most outcomes in
    SELECT s.metric AS m FROM sel s GROUP BY s.metric ORDER BY count(*) DESC, s.metric LIMIT 1
),
predictor AS (  -- the newest predictor of that metric (of any metric when the target has no outcomes)
    SELECT p.predictor_id, p.outcome_metric FROM predictors p
    WHERE metric IS NULL OR p.outcome_metric = metric
    ORDER BY p.outcome_metric IS NOT DISTINCT FROM (SELECT c.m FROM chosen c) DESC, p.fitted_at DESC
    LIMIT 1
),
candidates AS (
    SELECT s.source, 'outcome' AS evidence, 0 AS tier, avg(s.value) AS value, stddev_samp(s.value) AS std,
           count(*) AS n, any_value(s.metric) AS metric_name
    FROM sel s SEMI JOIN chosen c ON s.metric = c.m
    GROUP BY s.source
    UNION ALL
    SELECT pr.source, 'predicted', 1, pr.value, NULL, NULL, p.outcome_metric
    FROM predictions pr JOIN predictor p ON pr.predictor_id = p.predictor_id
    WHERE pr.target = target AND pr.source <> target
    UNION ALL
    SELECT CASE WHEN s.dataset_a = target THEN s.dataset_b ELSE s.dataset_a END, 'similarity:' || measure, 2,
           min(s.value), NULL, NULL, NULL
    FROM similarities s
    WHERE s.measure = measure AND target IN (s.dataset_a, s.dataset_b) AND s.dataset_a <> s.dataset_b
    GROUP BY ALL
),
lineage AS (  -- with exclude_lineage: parents, children, siblings, and datasets sharing an image (image_matches)
    SELECT d.name FROM datasets d JOIN datasets t ON t.name = target AND d.name <> t.name
    WHERE exclude_lineage
      AND (list_contains(d.derived_from, t.name) OR list_contains(t.derived_from, d.name)
           OR list_has_any(d.derived_from, t.derived_from))
    UNION
    SELECT m.dataset_b FROM image_matches(dataset := target) m  -- same picture: pHash within settings' distance
    WHERE exclude_lineage
),
kept AS (  -- each source once, on its strongest evidence
    SELECT c.* FROM candidates c ANTI JOIN lineage l ON c.source = l.name
    QUALIFY row_number() OVER (PARTITION BY c.source ORDER BY c.tier) = 1
)
SELECT row_number() OVER (ORDER BY k.tier, CASE WHEN k.tier = 2 THEN k.value ELSE -k.value END, k.source) AS rank,
       k.source, k.evidence, k.value::DOUBLE AS value, k.std::DOUBLE AS std, k.n::BIGINT AS n,
       k.metric_name::VARCHAR AS metric
FROM kept k
ORDER BY rank;
