-- 005_models: pretrained models to score on targets, and their cached features per target split.

CREATE TABLE models (
    name              VARCHAR PRIMARY KEY,
    architecture      VARCHAR NOT NULL,  -- timm model name
    source_dataset    VARCHAR,           -- pretraining source (imagenet, radimagenet, ...)
    method            VARCHAR,           -- supervised, simclr, swav, dino, ...
    weights_ref       VARCHAR,           -- file:<path>, package:<name>, hf-cache:<path>, random-init
    weights_sha256    VARCHAR,
    n_source_classes  INTEGER,           -- width of the source head, when present
    has_source_head   BOOLEAN,           -- LEEP and NCE need it
    added_at          TIMESTAMP
);

-- Features and source-head probabilities of a model on a target split, extracted once and reused
-- by every metric (Parquet beside the store).
CREATE TABLE model_features (
    model         VARCHAR NOT NULL,
    target        VARCHAR NOT NULL,
    split         VARCHAR NOT NULL,      -- '' = every image
    n             BIGINT,
    dim           INTEGER,
    path          VARCHAR,
    fingerprint   VARCHAR,               -- of the target's data and the model's weights
    computed_at   TIMESTAMP
);
