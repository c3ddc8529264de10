"""Fine-tuning runner: protocols as data, one pure trial function, a driver that alone writes the store.

    protocol.py  protocol files (protocols/*.toml) -> frozen dataclass; overrides and grids
    data.py      a target's images through its ingest loader; folds; torchvision augmentation
    trial.py     run_trial(spec) -> TrialRecord: the executor seam (no store access)
    runner.py    plan, skip stored trials, commit runs + outcomes; pretrain; list runs
    mlflow_log.py  optional: each stored run as an MLflow run (`finetune --mlflow URI`)
"""

from metadb.finetune.protocol import Protocol, load as load_protocol
from metadb.finetune.runner import finetune, list_runs, pretrain
from metadb.finetune.trial import TrialRecord, TrialSpec, run_trial

__all__ = ["Protocol", "load_protocol", "finetune", "list_runs", "pretrain", "TrialRecord", "TrialSpec", "run_trial"]
