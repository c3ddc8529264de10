"""Start a Dask cluster on a batch scheduler (Slurm) for `--executor dask://...`.

dask-jobqueue turns each batch job into Dask workers; metadb asks for one worker process per job
holding all of the job's GPUs, and declares them as the worker resource `GPU`, so a fine-tuning
trial (which asks for `{"GPU": 1}`) lands only where a GPU is free. The job script exports
metadb's worker settings (`executors.WORKER_CONFIG`: no statistical profiler, a slow event-loop
tick), which Dask reads from the environment when the worker starts. The scheduler runs in this
process: it prints the address to pass as `--executor` and keeps the cluster up until Ctrl-C.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

from metadb.errors import MetadbError

WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")


def slurm_options(jobs: int, gpus_per_job: int, cores: int, memory: str, walltime: str, queue: str | None,
                  account: str | None, port: int) -> dict[str, Any]:
    """SLURMCluster arguments; values are validated here, at the boundary, with one-line errors."""
    if jobs < 1:
        raise MetadbError(f"--jobs {jobs}: need at least one job")
    if gpus_per_job < 0 or cores < 1:
        raise MetadbError(f"--gpus-per-job {gpus_per_job} / --cores {cores}: need gpus >= 0 and cores >= 1")
    if not WALLTIME.match(walltime):
        raise MetadbError(f"--walltime {walltime!r} is not a Slurm time", "use HH:MM:SS or D-HH:MM:SS, e.g. 12:00:00")
    extra = [f"--gres=gpu:{gpus_per_job}"] if gpus_per_job else []
    worker_args = ["--resources", f"GPU={gpus_per_job}"] if gpus_per_job else []
    from metadb.executors import worker_environ

    return dict(cores=cores, processes=1, memory=memory, walltime=walltime, queue=queue, account=account,
                job_extra_directives=extra, worker_extra_args=worker_args,
                job_script_prologue=[f"export {k}={v}" for k, v in worker_environ().items()],
                scheduler_options={"port": port, "dashboard_address": None})


def slurm_cluster(jobs: int, **options: Any):
    """A started SLURMCluster scaled to `jobs` jobs (sbatch must be on PATH)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise MetadbError("dask-jobqueue is not installed", "pip install 'metadb[cluster]'") from None
    return SLURMCluster(**options)


def require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise MetadbError("sbatch not found: this machine is not a Slurm login node",
                          "run it where sbatch works, or --print-script to see the job script")
