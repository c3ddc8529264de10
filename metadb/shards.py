"""The shard loop shared by ingest and embed: run what the staging manifest lacks, record what finishes.

Both split a dataset into shards (`index`, images `lo`..`hi`, a Parquet `part` or ""), run them on
an executor and merge the results in shard order. Everything between is the same and lives here:
resume from the manifest, a progress bar in images, one manifest line per finished shard, and a
shard that keeps failing turned into one line naming its image range (nothing is committed; the
finished shards stay for the rerun).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from metadb.errors import MetadbError
from metadb.executors import Executor, TaskFailed
from metadb.staging import Staging


def run_shards(ex: Executor, staging: Staging, fn: Callable[[Any], Any], tasks: Sequence[Any], *, desc: str,
               progress: bool | None, label: str = "shard", name_first: bool = False,
               check: Callable[[Any], None] | None = None) -> tuple[list[Any], int]:
    """(every shard's result in shard order, shards resumed from the manifest).

    `check(result)` may raise before a shard is recorded (ingest's --strict); `label` and
    `name_first` (the shard's first file) shape the one-line failure.
    """
    done = staging.open()
    todo = [t for t in tasks if t.index not in done]
    total = tasks[-1].hi
    bar = tqdm(desc=desc, unit="img", total=total, disable=None if progress is None else not progress,
               file=sys.stderr, dynamic_ncols=True)
    bar.update(sum(t.hi - t.lo for t in tasks if t.index in done))
    try:
        with bar:
            for k, res in ex.run(fn, todo):
                t = todo[k]
                if check is not None:
                    check(res)
                staging.finish(t.index, res, part=Path(t.part).name if t.part else None, lo=t.lo, hi=t.hi,
                               rows=res.n_ok, seconds=round(res.seconds, 3))
                bar.update(t.hi - t.lo)
    except TaskFailed as e:
        t = todo[e.index]
        first = f", first {t.records[0].path}" if name_first and t.records else ""
        raise MetadbError(f"{label} {t.index} (images {t.lo}-{t.hi - 1} of {total}{first}) failed after "
                          f"{e.attempts} attempt(s): {type(e.error).__name__}: {e.error}",
                          "nothing was committed; finished shards are kept, so the same command resumes") from None
    entries = staging.finished()
    return [staging.result(entries[t.index]) for t in tasks], len(tasks) - len(todo)
