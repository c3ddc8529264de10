-- 014_runs: metadb's own fine-tuning and pretraining trials, one row per finished trial.
-- run_id is a hash of what decides the trial (kind, source and its weights' hash, target,
-- architecture, fold and the whole resolved protocol, seed included), so re-running a command
-- finds its trials done. A trial's row is written in one transaction with its outcome row; a
-- killed trial leaves no row and runs again. Curves and checkpoints live beside the store
-- (<store>.runs/), referenced by path and hash. A model made by `metadb pretrain` is registered
-- in `models` with weights_sha256 = its pretrain run's checkpoint_sha256 (that join gives its protocol).

CREATE TABLE runs (
    run_id             VARCHAR PRIMARY KEY,
    kind               VARCHAR NOT NULL,     -- finetune or pretrain
    source             VARCHAR NOT NULL,     -- registered model name, or random
    source_weights     VARCHAR,              -- the source's weights reference (random-init, file:..., package:...)
    source_sha256      VARCHAR,              -- the source weights' hash (NULL for random-init)
    target             VARCHAR NOT NULL,     -- the dataset trained on
    architecture       VARCHAR NOT NULL,     -- timm name
    protocol           VARCHAR NOT NULL,     -- protocol file name (cats-scans, juodelyte, source-matters)
    fold               INTEGER,              -- 1-based; 0 for pretraining's single split
    seed               INTEGER,
    hyperparameters    VARCHAR,              -- JSON: the whole resolved protocol, typed
    overrides          VARCHAR,              -- JSON: the fields that differ from the protocol file
    status             VARCHAR,              -- finished or diverged (a non-finite training loss)
    best_epoch         INTEGER,              -- the epoch kept (early-stopping criterion, or the last)
    epochs_run         INTEGER,
    val_auc            DOUBLE,               -- of the kept epoch
    val_loss           DOUBLE,
    test_auc           DOUBLE,               -- NULL when the protocol has no test split
    test_loss          DOUBLE,
    n_train            BIGINT,
    n_val              BIGINT,
    n_test             BIGINT,
    classes            VARCHAR,              -- JSON list, in output order
    wall_s             DOUBLE,
    device             VARCHAR,
    versions           VARCHAR,              -- JSON: python, metadb, torch, torchvision, timm, scikit-learn, numpy
    curves_path        VARCHAR,              -- Parquet: epoch, train_loss, val_loss, val_auc, lr, seconds
    checkpoint_path    VARCHAR,              -- the kept epoch's state_dict
    checkpoint_sha256  VARCHAR,
    finished_at        TIMESTAMP
);
