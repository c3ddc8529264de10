-- 007_outcome_semantics: what an outcome means beyond its number.
--
-- 1. Direction: one registry of which metrics are better high (AUC, accuracy, F1) and which low
--    (loss, error, ECE). best-source, regret and top-1 read it through `metric_higher_is_better`,
--    from SQL and from Python (metadb.directions), so nothing assumes "higher is better".
--    A metric missing here has no direction: rankings refuse it rather than guess. Declare one with
--    INSERT INTO metric_directions VALUES ('dice', true, 'overlap; higher is better').
-- 2. Selection: a run imported with a selection rule (`--select min:val_loss`) keeps the rule and
--    its value of the selection column, so which run answers for a (source, target, fold,
--    architecture, metric) is recomputed over every stored run on each import (and by metadb's own
--    runner), never per import. Rows without a rule (long, matrix, folds) are each ground truth.
--    Rows imported before 007 have no rule and keep the selection they were imported with.

CREATE TABLE metric_directions (
    metric            VARCHAR PRIMARY KEY,  -- lower case, without split prefixes (test_, val_, ...)
    higher_is_better  BOOLEAN NOT NULL,
    note              VARCHAR
);

INSERT INTO metric_directions VALUES
    ('auc', true, 'area under the ROC curve'), ('roc_auc', true, NULL), ('auroc', true, NULL),
    ('auc_roc', true, NULL), ('pr_auc', true, NULL), ('auprc', true, NULL), ('ap', true, 'average precision'),
    ('average_precision', true, NULL), ('map', true, 'mean average precision'),
    ('accuracy', true, NULL), ('acc', true, NULL), ('balanced_accuracy', true, NULL), ('top1', true, NULL),
    ('top5', true, NULL), ('f1', true, NULL), ('f1_macro', true, NULL), ('macro_f1', true, NULL),
    ('f1_weighted', true, NULL), ('precision', true, NULL), ('recall', true, NULL), ('sensitivity', true, NULL),
    ('specificity', true, NULL), ('kappa', true, 'Cohen''s kappa'), ('mcc', true, 'Matthews correlation'),
    ('dice', true, NULL), ('iou', true, NULL), ('r2', true, NULL),
    ('loss', false, NULL), ('nll', false, 'negative log-likelihood'), ('cross_entropy', false, NULL),
    ('bce', false, NULL), ('error', false, NULL), ('error_rate', false, NULL), ('top1_error', false, NULL),
    ('ece', false, 'expected calibration error'), ('brier', false, NULL), ('mse', false, NULL),
    ('rmse', false, NULL), ('mae', false, NULL);

-- The direction of a metric name as stored (`test_auc`, `val_loss`, `metrics.test_auc`, `AUC`):
-- lower-cased, a split prefix dropped, then looked up; NULL when undeclared.
CREATE MACRO metric_key(m) AS regexp_replace(lower(trim(m)), '^(metrics\.)?(test|val|valid|validation|train|eval)_', '');
CREATE MACRO metric_higher_is_better(m) AS
    (SELECT d.higher_is_better FROM metric_directions d WHERE d.metric = metric_key(m));

ALTER TABLE outcomes ADD COLUMN selection VARCHAR;        -- 'min:val_loss' / 'max:val_auc'; NULL = every row counts
ALTER TABLE outcomes ADD COLUMN selection_value DOUBLE;   -- the run's value of the selection column
