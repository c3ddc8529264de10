"""`metadb cluster slurm`: a Dask cluster on Slurm, for `--executor dask://...`."""

from __future__ import annotations

import time

import click


@click.group()
def cluster() -> None:
    """Start a Dask cluster that ingest, embed and finetune can use with --executor."""


@cluster.command()
@click.option("--jobs", type=int, default=4, show_default=True, help="Batch jobs (one Dask worker each).")
@click.option("--gpus-per-job", type=int, default=1, show_default=True, help="GPUs per job, declared as resource GPU.")
@click.option("--cores", type=int, default=8, show_default=True, help="CPU cores per job (decoding).")
@click.option("--memory", default="32GB", show_default=True, help="Memory per job.")
@click.option("--walltime", default="12:00:00", show_default=True, help="Slurm time limit per job.")
@click.option("--queue", help="Slurm partition.")
@click.option("--account", help="Slurm account.")
@click.option("--port", type=int, default=8786, show_default=True, help="Scheduler port.")
@click.option("--print-script", is_flag=True, help="Print the job script and exit (nothing is submitted).")
def slurm(jobs, gpus_per_job, cores, memory, walltime, queue, account, port, print_script) -> None:
    """Submit --jobs Slurm jobs as Dask workers, print the scheduler address, keep it up until Ctrl-C."""
    from metadb.cluster import require_sbatch, slurm_cluster, slurm_options

    options = slurm_options(jobs, gpus_per_job, cores, memory, walltime, queue, account, port)
    if not print_script:
        require_sbatch()
    c = slurm_cluster(jobs, **options)
    try:
        if print_script:
            click.echo(c.job_script().rstrip("\n"))
            return
        c.scale(jobs=jobs)
        address = c.scheduler_address
        click.echo(f"{address}\n  use: metadb ingest ... --executor dask://{address.split('://', 1)[1]} "
                   f"(or export METADB_SCHEDULER={address}); Ctrl-C stops the cluster")
        while True:
            time.sleep(3600)
    finally:
        c.close()


COMMANDS = [cluster]
