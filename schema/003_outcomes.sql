-- 003_outcomes: what happened when transferring (fine-tuning outcomes), transferability scores,
-- imported files (so re-importing adds nothing), fitted predictors and their predictions.

CREATE TABLE outcomes (
    source           VARCHAR NOT NULL,   -- source dataset or pretrained model
    target           VARCHAR NOT NULL,
    architecture     VARCHAR,
    pretraining      VARCHAR,            -- supervised, simclr, swav, dino, ...
    protocol         VARCHAR,            -- fine-tune or linear-probe
    metric           VARCHAR NOT NULL,   -- auc, accuracy, ...
    value            DOUBLE NOT NULL,
    fold             INTEGER,
    seed             INTEGER,
    hyperparameters  VARCHAR,            -- JSON
    run_id           VARCHAR,
    status           VARCHAR,
    is_selected      BOOLEAN NOT NULL,   -- the run that is the pair's ground truth (all rows, unless --select)
    file             VARCHAR,            -- provenance: imported file, its row, when
    file_row         BIGINT,
    imported_at      TIMESTAMP
);

CREATE TABLE scores (
    source          VARCHAR NOT NULL,    -- source dataset or model scored
    target          VARCHAR NOT NULL,
    metric          VARCHAR NOT NULL,    -- logme, leep, ...
    value           DOUBLE,
    metric_version  VARCHAR,
    params          VARCHAR,             -- JSON
    n               BIGINT,              -- target images the score used
    seed            INTEGER,
    runtime_s       DOUBLE,
    file            VARCHAR,             -- imported file, or NULL when computed
    file_row        BIGINT,
    computed_at     TIMESTAMP
);

CREATE TABLE imports (
    sha256       VARCHAR PRIMARY KEY,    -- of the file's bytes plus the import options
    file         VARCHAR,
    kind         VARCHAR,                -- outcomes, scores, similarities
    format       VARCHAR,
    rows         BIGINT,
    imported_at  TIMESTAMP
);

CREATE TABLE predictors (
    predictor_id    VARCHAR PRIMARY KEY,
    model           VARCHAR,             -- ridge, forest, boosting
    outcome_metric  VARCHAR,
    features        VARCHAR,             -- JSON list of feature names
    params          VARCHAR,             -- JSON
    n_train         BIGINT,
    estimator       BLOB,                -- pickled scikit-learn pipeline
    fitted_at       TIMESTAMP
);

CREATE TABLE predictions (
    predictor_id  VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    target        VARCHAR NOT NULL,
    value         DOUBLE,
    predicted_at  TIMESTAMP
);
