"""Fine-tuning runner: protocols as data, one pure trial function, a driver that alone writes the store.

    protocol.py  protocol files (protocols/*.toml) -> frozen dataclass; overrides and grids
    data.py      a target's images through its ingest loader; folds; torchvision augmentation
    trial.py     run_trial(spec) -> TrialRecord: the executor seam (no store access)
    runner.py    plan, skip stored trials, commit runs + outcomes; pretrain; list runs
    mlflow_log.py  optional: each stored run as an MLflow run (`finetune --mlflow URI`)

Import the submodules themselves: this package imports nothing, so `metadb --help` and every
other command do not pay for polars and torch through the fine-tuning runner.
"""
