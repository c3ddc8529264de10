"""The executor seam: where `task(shard or trial) -> record` runs.

Ingest, embed and fine-tuning each reduce to independent tasks whose results the driver alone
merges and commits (DuckDB has one writer). An executor only runs tasks and hands results back as
they finish; it never sees the store. Three implementations behind one spec string:

    local              a process pool on this machine (the default; no Dask needed)
    local-cluster:N    a Dask LocalCluster with N worker processes (same code path as a cluster)
    dask://host:port   an existing Dask scheduler (also $METADB_SCHEDULER)

Dask retries a task whose worker died (`retries`); a task that raises keeps its exception, and
`run` reports it as `TaskFailed` with the task's index so the caller can name the shard's range.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol, Sequence

from metadb.errors import MetadbError

RETRIES = 2  # attempts after the first: a worker lost mid-task is retried, a deterministic failure is not hidden
CONNECT_TIMEOUT = 10.0

# Dask worker diagnostics that metadb's CPU-bound tasks pay for and nothing of metadb reads. Measured
# inside the task on the same 256-JPEG ingest shard (2-worker LocalCluster, median of 10 shards):
# the worker's other threads took 0.073 s of CPU per 1.2 s shard with the defaults and 0.014 s
# without these two, and the task thread gave up the GIL 398 times per shard instead of 72.
#   - the statistical profiler samples the running task's stack every 10 ms (dashboard profiles): 0.04 s
#   - the event loop's health tick every 20 ms (a metric; the "unresponsive" warning comes at 3 s): 0.02 s
# The memory monitor (pause/terminate on memory) and heartbeats stay: they are safety, not diagnostics.
# local-cluster:N applies this; workers started elsewhere read it from the environment (`worker_environ`).
WORKER_CONFIG: dict[str, Any] = {"distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s"}


def worker_environ() -> dict[str, str]:
    """WORKER_CONFIG as the environment variables Dask reads at start-up (for job scripts, `dask worker`)."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
            for key, value in WORKER_CONFIG.items()}


class TaskFailed(Exception):
    """Task `index` raised (after the executor's retries); `error` is its exception."""

    def __init__(self, index: int, error: BaseException, attempts: int):
        self.index, self.error, self.attempts = index, error, attempts
        super().__init__(f"task {index} failed after {attempts} attempt(s): {error}")


class Executor(Protocol):
    name: str
    workers: int

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], resources: dict[str, float] | None = None
            ) -> Iterator[tuple[int, Any]]:
        """(index, result) as tasks finish, in completion order; raises TaskFailed on the first failure."""

    def close(self) -> None: ...


class LocalPool:
    """A process pool on this machine; one worker runs tasks inline (no process, easy debugging).

    `start_method`: how worker processes start (default fork on Linux). Tasks that run OpenMP code
    (torch, scikit-learn) in a driver that already did need "spawn": a forked child inherits
    libgomp's thread pool without its threads and hangs at its first parallel region.
    """

    def __init__(self, workers: int | None = None, start_method: str | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.start_method = start_method or ("fork" if sys.platform == "linux" else "spawn")
        self.name = f"local ({self.workers} process{'es' if self.workers > 1 else ''})"
        self._pool = None

    def run(self, fn, items, resources=None):
        if self.workers == 1:
            for i, item in enumerate(items):
                try:
                    yield i, fn(item)
                except MetadbError:
                    raise
                except Exception as e:
                    raise TaskFailed(i, e, 1) from e
            return
        if self._pool is None:
            # multiprocessing.Pool, not concurrent.futures: its workers close their copy of the task
            # queue's write end, so workers orphaned by a kill -9 of the driver see EOF and exit
            ctx = mp.get_context(self.start_method)
            self._pool = ctx.Pool(self.workers)
        for i, ok, value in self._pool.imap_unordered(_call, ((fn, i, item) for i, item in enumerate(items))):
            if ok:
                yield i, value
            elif isinstance(value, MetadbError):
                raise value
            else:
                raise TaskFailed(i, value, 1)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()  # stops at once on an error or Ctrl-C; after success all tasks are done
            self._pool.join()
            self._pool = None


def _call(job: tuple[Callable[[Any], Any], int, Any]) -> tuple[int, bool, Any]:
    """Runs in a pool worker: the task's result, or its exception, tagged with its index."""
    fn, i, item = job
    try:
        return i, True, fn(item)
    except Exception as e:
        return i, False, e


class DaskExecutor:
    """Tasks on a Dask cluster: an existing scheduler, or a LocalCluster this object owns."""

    def __init__(self, client, cluster=None, name: str = "dask"):
        self.client, self.cluster, self.name = client, cluster, name

    @property
    def workers(self) -> int:
        return max(1, len(self.client.nthreads()))

    def run(self, fn, items, resources=None):
        from distributed import as_completed

        futures = {self.client.submit(fn, item, pure=False, retries=RETRIES, resources=resources): i
                   for i, item in enumerate(items)}
        try:
            for fut in as_completed(futures, loop=self.client.loop):
                i = futures[fut]
                if fut.status == "error":
                    err = fut.exception()
                    if isinstance(err, MetadbError):
                        raise MetadbError(err.message, err.hint)
                    raise TaskFailed(i, err, RETRIES + 1)
                yield i, fut.result()
        finally:
            for fut in futures:  # a failure or Ctrl-C: nothing of this run keeps the cluster busy
                fut.cancel()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _dask():
    try:
        import distributed
    except ImportError:
        raise MetadbError("Dask is not installed (needed for --executor dask:// and local-cluster:N)",
                          "pip install 'metadb[cluster]'") from None
    return distributed


def connect(address: str):
    """A Client for a scheduler address; an unreachable one is a one-line error, not a 30 s traceback."""
    distributed = _dask()
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise MetadbError(f"cannot reach the Dask scheduler at {address} ({type(e).__name__})",
                          "start one (`dask scheduler`, `metadb cluster slurm`) or check --executor / "
                          "$METADB_SCHEDULER") from None


def create_executor(spec: str | None = None, workers: int | None = None, start_method: str | None = None) -> Executor:
    """An executor from its spec (`local`, `local-cluster:N`, `dask://host:port`, `tcp://...`).

    No spec: $METADB_SCHEDULER when set, else the local pool of `workers` processes (started by
    `start_method`, see LocalPool).
    """
    spec = (spec or os.environ.get("METADB_SCHEDULER") or "local").strip()
    if spec == "local":
        return LocalPool(workers, start_method)
    if spec.startswith("local-cluster"):
        n = spec.partition(":")[2] or str(workers or os.cpu_count() or 1)
        if not n.isdigit() or int(n) < 1:
            raise MetadbError(f"--executor {spec}: expected local-cluster:N with N >= 1 workers")
        distributed = _dask()
        import dask

        # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, so every decoded image's
        # buffers go back to the OS and are faulted in again: +30% CPU per image on ingest here.
        # Workers we start ourselves keep glibc's default; the BLAS thread caps stay. (Ingest shards
        # also set the thresholds themselves, see metadb.allocator; embed shards and trials do not.)
        # The nannies hand the driver's config to their workers, and the scheduler in this process
        # reads it too: WORKER_CONFIG reaches every process of the cluster.
        environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
                   if k != "MALLOC_TRIM_THRESHOLD_"}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **WORKER_CONFIG}):
            cluster = distributed.LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                                               dashboard_address=":0", silence_logs=40)
        return DaskExecutor(distributed.Client(cluster, set_as_default=False), cluster, f"local-cluster ({n} workers)")
    if spec.startswith(("dask://", "tcp://", "tls://")):
        address = "tcp://" + spec.split("://", 1)[1] if spec.startswith("dask://") else spec
        return DaskExecutor(connect(address), None, f"dask {address}")
    raise MetadbError(f"--executor {spec!r} is not an executor",
                      "use local, local-cluster:N or dask://host:port (or set $METADB_SCHEDULER)")


@contextmanager
def using(executor: str | Executor | None, workers: int | None = None,
          start_method: str | None = None) -> Iterator[Executor]:
    """The executor a command was handed, or one made from its spec and closed when the block ends.

    An Executor object belongs to the caller (a benchmark or test reusing one cluster) and is left open.
    """
    if hasattr(executor, "run"):
        yield executor
        return
    ex = create_executor(executor, workers, start_method)
    try:
        yield ex
    finally:
        ex.close()
