/*
name: best_source
question: Which source datasets or models should I transfer from for this target, best first, and on what evidence?
params:
  target VARCHAR                  the target dataset
  metric VARCHAR = NULL           outcome metric to rank by (default: the target's most reported one)
  measure VARCHAR = NULL          similarity measure for sources with neither outcome nor prediction
  exclude_lineage BOOLEAN = false also drop sources derived from the target, sharing its parent, or sharing images with it
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
-- parameters are read once here: they share names with columns, which DuckDB would find ambiguous
WITH args AS (
    SELECT target AS tgt, metric AS want_metric, measure AS want_measure, exclude_lineage AS drop_lineage
),
chosen_metric AS (
    SELECT coalesce(a.want_metric, (SELECT o.metric FROM outcomes o WHERE o.target = a.tgt AND o.is_selected
                                    GROUP BY o.metric ORDER BY count(*) DESC, o.metric LIMIT 1)) AS m
    FROM args a
),
observed AS (
    SELECT o.source, avg(o.value) AS value, stddev_samp(o.value) AS std, count(*) AS n, any_value(o.metric) AS metric_name
    FROM outcomes o, chosen_metric c, args a
    WHERE o.target = a.tgt AND o.is_selected AND o.metric = c.m AND o.source <> a.tgt
    GROUP BY o.source
),
latest AS (
    SELECT p.predictor_id, p.outcome_metric FROM predictors p ORDER BY p.fitted_at DESC LIMIT 1
),
predicted AS (
    SELECT pr.source, pr.value, l.outcome_metric AS metric_name
    FROM predictions pr JOIN latest l ON pr.predictor_id = l.predictor_id, args a
    WHERE pr.target = a.tgt AND pr.source <> a.tgt AND pr.source NOT IN (SELECT source FROM observed)
),
near AS (
    SELECT CASE WHEN s.dataset_a = a.tgt THEN s.dataset_b ELSE s.dataset_a END AS source, min(s.value) AS value
    FROM similarities s, args a
    WHERE s.measure = a.want_measure AND a.tgt IN (s.dataset_a, s.dataset_b) AND s.dataset_a <> s.dataset_b
    GROUP BY 1
),
candidates AS (
    SELECT o.source, 'outcome' AS evidence, 0 AS tier, o.value, o.std, o.n, o.metric_name FROM observed o
    UNION ALL
    SELECT p.source, 'predicted', 1, p.value, NULL, NULL, p.metric_name FROM predicted p
    UNION ALL
    SELECT near.source, 'similarity:' || a.want_measure, 2, near.value, NULL, NULL, NULL FROM near, args a
    WHERE near.source NOT IN (SELECT source FROM observed) AND near.source NOT IN (SELECT source FROM predicted)
),
lineage AS (
    SELECT d.name FROM datasets d, datasets t, args a
    WHERE a.drop_lineage AND t.name = a.tgt AND d.name <> t.name
      AND (list_contains(d.derived_from, t.name) OR list_contains(t.derived_from, d.name)
           OR list_has_any(d.derived_from, t.derived_from))
    UNION
    SELECT CASE WHEN ov.dataset_a = a.tgt THEN ov.dataset_b ELSE ov.dataset_a END
    FROM args a, overlap(dataset := target) ov
    WHERE a.drop_lineage
)
SELECT row_number() OVER (ORDER BY c.tier, CASE WHEN c.tier = 2 THEN c.value ELSE -c.value END, c.source) AS rank,
       c.source, c.evidence, c.value::DOUBLE AS value, c.std::DOUBLE AS std, c.n::BIGINT AS n, c.metric_name::VARCHAR AS metric
FROM candidates c, args a
WHERE NOT a.drop_lineage OR c.source NOT IN (SELECT name FROM lineage)
ORDER BY rank;
