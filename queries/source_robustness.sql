/*
name: source_robustness
question: Is this source robust to shortcuts? Per source and confounder rate, mean and std over folds of the AUC on the clean test set, on the test set with the confounder on the negatives, and their gap ("Source Matters", Juodelyte et al. 2024; stored by metadb confound). The permutation test between sources is in `metadb query robustness` (scipy, in Python).
params:
  target VARCHAR              the target the variants were derived from
  kind VARCHAR = NULL         only this confounder (tag, lowpass, noise, attribute)
columns:
  source VARCHAR              the fine-tuned source model
  architecture VARCHAR        its architecture
  kind VARCHAR                confounder kind
  rate DOUBLE                 share of training positives carrying the confounder
  variant VARCHAR             the derived dataset (lineage: the target; recipe and seed in datasets.params)
  n_folds BIGINT              folds with both AUCs (the selected run of each fold)
  auc_clean DOUBLE            mean AUC on the clean test set
  auc_clean_std DOUBLE        its sample std over folds
  auc_confounded DOUBLE       mean AUC on the test set with the confounder on the negatives
  auc_confounded_std DOUBLE   its sample std over folds
  gap DOUBLE                  mean over folds of auc_clean - auc_confounded (large: the shortcut was learned)
  gap_std DOUBLE              its sample std over folds
  confounded_folds DOUBLE[]   auc_confounded of each fold, in fold order (for tests between sources)
*/
CREATE OR REPLACE MACRO source_robustness(target, kind := NULL) AS TABLE
WITH guard AS (
    SELECT CASE WHEN EXISTS (SELECT 1 FROM datasets d WHERE d.name = target) THEN true
                ELSE error('unknown target ' || target || ': not a dataset in the store') END AS ok
),
variants AS (
    SELECT d.name, json_extract_string(d.params, '$.kind') AS kind, CAST(json_extract(d.params, '$.rate') AS DOUBLE) AS rate
    FROM datasets d
    WHERE d.layout = 'confound' AND json_extract_string(d.params, '$.base') = target
      AND (kind IS NULL OR json_extract_string(d.params, '$.kind') = kind)
),
folds AS (  -- one row per selected run: both AUCs side by side
    SELECT o.source, o.architecture, v.kind, v.rate, v.name AS variant, o.fold,
           any_value(o.value) FILTER (WHERE o.metric = 'auc_clean') AS clean,
           any_value(o.value) FILTER (WHERE o.metric = 'auc_confounded_negatives') AS confounded
    FROM outcomes o JOIN variants v ON o.target = v.name
    WHERE o.is_selected AND o.metric IN ('auc_clean', 'auc_confounded_negatives')
    GROUP BY o.source, o.architecture, v.kind, v.rate, v.name, o.fold, o.run_id
)
SELECT f.source, f.architecture, f.kind, f.rate, f.variant, count(*) AS n_folds,
       avg(f.clean) AS auc_clean, stddev_samp(f.clean) AS auc_clean_std,
       avg(f.confounded) AS auc_confounded, stddev_samp(f.confounded) AS auc_confounded_std,
       avg(f.clean - f.confounded) AS gap, stddev_samp(f.clean - f.confounded) AS gap_std,
       list(f.confounded ORDER BY f.fold, f.confounded) AS confounded_folds
FROM folds f, guard g
WHERE g.ok AND f.clean IS NOT NULL AND f.confounded IS NOT NULL
GROUP BY f.source, f.architecture, f.kind, f.rate, f.variant
ORDER BY f.kind, f.rate, f.source, f.architecture;
