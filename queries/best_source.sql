/*
name: best_source
question: Which source datasets or models should I transfer from for this target, best first, on what evidence and from where?
params:
  target VARCHAR                  the target dataset (an error naming close names when the store does not know it)
  metric VARCHAR = NULL           outcome metric to rank by (default: the target's most reported one)
  measure VARCHAR = NULL          similarity measure for sources with neither outcome nor prediction (in one feature space: the backbone with most pairs for the target)
  exclude_lineage BOOLEAN = false also drop sources derived from the target (or it from them), sharing its parent, or sharing images with it
  architecture VARCHAR = NULL     only outcomes of this architecture (without it, each architecture is its own row, never averaged)
  by VARCHAR = NULL               a hyperparameter (e.g. freeze): rank separately for each of its settings
  evidence VARCHAR = 'all'        own (everything not from a published pack), published, or all
columns:
  rank BIGINT                     1 = best (within the setting, with --by)
  source VARCHAR                  candidate source
  evidence VARCHAR                outcome (observed), predicted (stored predictor), or similarity:<measure>
  value DOUBLE                    mean outcome, predicted outcome, or distance (lower is closer)
  std DOUBLE                      sample std of the outcome over folds, seeds or selected runs
  n BIGINT                        outcome rows averaged
  metric VARCHAR                  outcome metric of value (ranked by its declared direction)
  architecture VARCHAR            architecture of the outcomes (NULL when not recorded, and for other evidence)
  setting VARCHAR                 value of the --by hyperparameter ('(not set)' when a run lacks it); without --by, says when a row pools runs of different settings
  features_known INTEGER          predicted rows: how many of the predictor's features were known (not imputed) for the pair
  origin VARCHAR                  where the evidence came from: published:<pack>@<version>, import:<file>, run, predictor:<model>, computed
*/
CREATE OR REPLACE MACRO best_source(target, metric := NULL, measure := NULL, exclude_lineage := false,
                                    architecture := NULL, "by" := NULL, evidence := 'all') AS TABLE
-- Evidence tiers: an observed outcome beats a prediction, which beats a similarity. Unqualified
-- `target`, `metric`, `measure`, `exclude_lineage`, `architecture`, `"by"` (quoted: BY is a keyword)
-- and `evidence` are the parameters; columns are always qualified. Outcomes are read from
-- outcome_summary (migration 017: aggregated per source, metric and architecture by every write, in
-- the writer's transaction), so a call costs the same at 100 thousand and 10 million outcome rows;
-- only a per-setting ranking (`by`) aggregates the outcomes themselves. Which way is better comes from
-- metric_directions (migration 007): a metric nobody declared is refused, not guessed.
WITH guard AS (  -- a mistyped target is an error naming close names, not an empty table
    SELECT CASE
        WHEN evidence NOT IN ('own', 'published', 'all')
            THEN error('best_source: evidence is own, published or all, not ' || evidence)
        WHEN EXISTS (SELECT 1 FROM datasets d WHERE d.name = target) THEN true  -- imports add every name they store
        ELSE error('unknown target ' || target || ': not a dataset in the store' || coalesce(
            '; did you mean ' || (SELECT string_agg(x.name, ', ' ORDER BY x.score DESC, x.name)
                                  FROM (SELECT d.name, jaro_winkler_similarity(lower(d.name), lower(target)) AS score
                                        FROM datasets d ORDER BY score DESC, d.name LIMIT 3) x
                                  WHERE x.score >= 0.75) || '?',
            '; ingest it or import outcomes for it first'))
    END AS ok
),
summary AS (  -- without "by": the target's selected outcomes, aggregated per write (migration 017)
    SELECT s.source, s.metric, s.architecture, s.n, s.value, s.std, s.setting, s.origin
    FROM outcome_summary s
    WHERE "by" IS NULL AND s.target = target AND (s.scope = evidence OR (evidence = 'all' AND s.alone)) AND s.source <> target
      AND (metric IS NULL OR s.metric = metric) AND (architecture IS NULL OR s.architecture = architecture)
),
sel AS (  -- with "by": the target's ground-truth outcomes from other sources, one setting each
    SELECT o.source, o.metric, o.value, o.architecture, o.hyperparameters,
           coalesce(json_extract_string(o.hyperparameters, '$."' || "by" || '"'), '(not set)') AS setting,
           CASE WHEN o.origin = 'import' OR o.origin IS NULL THEN 'import:' || coalesce(o.file, '?') ELSE o.origin END AS origin
    FROM outcomes o
    WHERE "by" IS NOT NULL AND o.target = target AND o.is_selected AND o.source <> target
      AND (metric IS NULL OR o.metric = metric) AND (architecture IS NULL OR o.architecture = architecture)
      AND (evidence = 'all' OR (evidence = 'published') = coalesce(o.origin LIKE 'published:%', false))
),
chosen AS (  -- the metric asked for, else the one the target has most outcomes in
    SELECT c.metric AS m
    FROM (SELECT s.metric, s.n FROM summary s UNION ALL SELECT s.metric, 1 FROM sel s) c
    GROUP BY c.metric ORDER BY sum(c.n) DESC, c.metric LIMIT 1
),
predictor AS (  -- the newest predictor of that metric (of any metric when the target has no outcomes)
    SELECT p.predictor_id, p.outcome_metric, p.model FROM predictors p
    WHERE (metric IS NULL OR p.outcome_metric = metric) AND evidence <> 'published'
    ORDER BY p.outcome_metric IS NOT DISTINCT FROM (SELECT c.m FROM chosen c) DESC, p.fitted_at DESC
    LIMIT 1
),
space AS (  -- similarity evidence comes from one feature space, never a mix: the one with most pairs for the target
    SELECT s.backbone AS bb FROM similarities s
    WHERE s.measure = measure AND target IN (s.dataset_a, s.dataset_b) AND s.dataset_a <> s.dataset_b
      AND (evidence = 'all' OR (evidence = 'published') = coalesce(s.origin LIKE 'published:%', false))
    GROUP BY s.backbone ORDER BY count(*) DESC, max(s.computed_at) DESC, s.backbone LIMIT 1
),
candidates AS (
    SELECT s.source, 'outcome' AS evidence, 0 AS tier, s.value, s.std, s.n, s.metric AS metric_name, s.architecture,
           NULL::VARCHAR AS part, s.setting, NULL::INTEGER AS features_known, s.origin
    FROM summary s SEMI JOIN chosen c ON s.metric = c.m
    UNION ALL
    SELECT s.source, 'outcome', 0, avg(s.value), stddev_samp(s.value), count(*), any_value(s.metric), s.architecture,
           s.setting, s.setting, NULL,  -- import paths shortened to file names once per row of the answer
           regexp_replace(string_agg(DISTINCT s.origin, ', ' ORDER BY s.origin), 'import:[^,]*[/\\]', 'import:', 'g')
    FROM sel s SEMI JOIN chosen c ON s.metric = c.m
    GROUP BY s.source, s.architecture, s.setting
    UNION ALL
    -- a prediction with no known feature for its pair is the predictor's prior, not evidence: left out
    SELECT pr.source, 'predicted', 1, pr.value, NULL, NULL, p.outcome_metric, NULL, NULL, NULL, pr.n_features_known,
           'predictor:' || p.model
    FROM predictions pr JOIN predictor p ON pr.predictor_id = p.predictor_id
    WHERE pr.target = target AND pr.source <> target AND coalesce(pr.n_features_known, 1) > 0
    UNION ALL
    SELECT CASE WHEN s.dataset_a = target THEN s.dataset_b ELSE s.dataset_a END, 'similarity:' || measure, 2,
           min(s.value), NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           string_agg(DISTINCT CASE WHEN s.origin = 'import' THEN 'import:' || coalesce(regexp_extract(s.source, '[^/\\]+$'), '?')
                                    ELSE coalesce(s.origin, 'computed') END, ', ')
    FROM similarities s
    WHERE s.measure = measure AND target IN (s.dataset_a, s.dataset_b) AND s.dataset_a <> s.dataset_b
      AND (evidence = 'all' OR (evidence = 'published') = coalesce(s.origin LIKE 'published:%', false))
      AND s.backbone = (SELECT bb FROM space)
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
checked AS (  -- the guard joined in front (and a window as a barrier) so it runs even when nothing matches
    SELECT c.*, row_number() OVER () AS _barrier FROM guard g LEFT JOIN candidates c ON g.ok
),
kept AS (  -- each source on its strongest evidence (one row per architecture and setting)
    SELECT c.*,
           CASE WHEN c.tier = 2 THEN c.value
                WHEN d.higher_is_better THEN -c.value
                WHEN NOT d.higher_is_better THEN c.value
                ELSE error('outcome metric ' || c.metric_name || ' has no declared direction (is higher better?); '
                           || 'declare it: INSERT INTO metric_directions VALUES (''' || metric_key(c.metric_name)
                           || ''', true, NULL) (false when lower is better)') END AS badness
    FROM checked c ANTI JOIN lineage l ON c.source = l.name
    LEFT JOIN metric_directions d ON d.metric = metric_key(c.metric_name)
    WHERE c.source IS NOT NULL
    QUALIFY rank() OVER (PARTITION BY c.source ORDER BY c.tier) = 1
)
SELECT row_number() OVER (PARTITION BY k.part ORDER BY k.tier, k.badness, k.source, k.architecture) AS rank,
       k.source, k.evidence, k.value::DOUBLE AS value, k.std::DOUBLE AS std, k.n::BIGINT AS n,
       k.metric_name::VARCHAR AS metric, k.architecture::VARCHAR AS architecture, k.setting::VARCHAR AS setting,
       k.features_known::INTEGER AS features_known, k.origin::VARCHAR AS origin
FROM kept k
ORDER BY k.part NULLS FIRST, rank;
