"""A staging folder of finished shards: what makes a killed ingest or embed resumable.

Workers write their per-image rows as one Parquet part per shard into the folder; the driver, the
only process that writes here besides them, stores each finished shard's small result (extractor
partials, Gaussian accumulator) as a pickle and then appends one line to `manifest.jsonl`. A shard
counts as finished only once its manifest line is complete, so a driver killed at any instant
leaves a manifest that names exactly the shards whose part and result are whole. The same command
run again opens the same folder (its name is the dataset and input fingerprint) and recomputes only
the shards the manifest lacks; the store is untouched until the final commit, after which the
folder is removed.

A folder is owned by the live driver whose pid is in `owner`; another driver for the same work
gets a one-line error instead of racing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from metadb.errors import MetadbError


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Staging:
    """`<root>/<kind>-<name hash>-<key>/`: parts, results and the manifest of one unit of work."""

    def __init__(self, root: Path, kind: str, name: str, key: str, layout: dict[str, Any]):
        self.root = root
        self.prefix = f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:8]}-"
        self.dir = root / f"{self.prefix}{key}"
        self.layout = layout  # shard boundaries; a folder planned differently is not resumed
        self.manifest = self.dir / "manifest.jsonl"

    def open(self) -> dict[int, dict[str, Any]]:
        """Claim the folder and return the finished shards it already holds (index -> manifest entry)."""
        self._remove_superseded()
        owner = self.dir / "owner"
        if owner.exists():
            pid = int(owner.read_text().strip() or 0)
            if pid != os.getpid() and pid_alive(pid):
                raise MetadbError(f"another metadb process (pid {pid}) is computing the same shards in {self.dir}",
                                  "wait for it to finish, or stop it")
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(owner, str(os.getpid()).encode())
        done = self._read_manifest()
        if done is None:  # planned with other shard boundaries: start over
            for p in self.dir.iterdir():
                if p.name != "owner":
                    p.unlink()
            _atomic_write(self.dir / "layout.json", json.dumps(self.layout, sort_keys=True).encode())
            return {}
        return done

    def _read_manifest(self) -> dict[int, dict[str, Any]] | None:
        layout = self.dir / "layout.json"
        if not layout.exists() or json.loads(layout.read_text()) != json.loads(json.dumps(self.layout)):
            return None
        done: dict[int, dict[str, Any]] = {}
        if self.manifest.exists():
            for line in self.manifest.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the driver died writing this line: that shard is not done
                    continue
                if all((self.dir / entry[k]).exists() for k in ("part", "result") if entry.get(k)):
                    done[entry["shard"]] = entry
        return done

    def finished(self) -> dict[int, dict[str, Any]]:
        return self._read_manifest() or {}

    def part(self, index: int) -> Path:
        return self.dir / f"part-{index:06d}.parquet"

    def finish(self, index: int, result: Any, **entry: Any) -> None:
        """Record a finished shard: its result first, then its manifest line.

        No fsync: a killed driver loses nothing the kernel has (the case resuming is for); after a
        power loss a shard whose line or result is torn is simply recomputed.
        """
        name = f"result-{index:06d}.pkl"
        _atomic_write(self.dir / name, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        line = json.dumps({"shard": index, "result": name, **entry}, default=str) + "\n"
        with self.manifest.open("a") as fh:
            fh.write(line)

    def result(self, entry: dict[str, Any]) -> Any:
        return pickle.loads((self.dir / entry["result"]).read_bytes())

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.root.rmdir()
        except OSError:
            pass

    def _remove_superseded(self) -> None:
        """Folders of the same work whose inputs have since changed, and whose driver is gone."""
        if not self.root.is_dir():
            return
        for d in self.root.iterdir():
            if d == self.dir:
                continue
            stale_same_work = d.name.startswith(self.prefix)
            old_style = d.name.split("-", 1)[0].isdigit()  # `<pid>-<run>` folders of earlier versions
            if stale_same_work or old_style:
                owner = d / "owner"
                pid = int(owner.read_text().strip() or 0) if owner.exists() else (
                    int(d.name.split("-", 1)[0]) if old_style else 0)
                if not (pid and pid_alive(pid)):
                    shutil.rmtree(d, ignore_errors=True)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
