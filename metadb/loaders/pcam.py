"""`pcam`: PatchCamelyon HDF5 files, camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5.

`subset=N, seed=S` draws a seeded random subset of N training patches (numpy default_rng(S),
without replacement, read in index order): the pcam-small (10k) and pcam-middle (100k) sources of
"Cats, not CAT scans". Patches are read in slices of CHUNK, so memory stays flat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from metadb.errors import MetadbError
from metadb.loaders.base import Loader, register_loader
from metadb.records import Record

SPLITS = ("train", "valid", "test")
CHUNK = 1024


def _file(root: Path, split: str, part: str) -> Path:
    return root / f"camelyonpatch_level_2_split_{split}_{part}.h5"


@register_loader("pcam")
class PatchCamelyon(Loader):
    """96x96 RGB lymph-node patches labelled 1 when the centre holds metastatic tissue."""

    def _splits(self) -> list[str]:
        return [s for s in SPLITS if _file(self.root, s, "x").exists() and _file(self.root, s, "y").exists()]

    def check(self) -> None:
        for part in ("x", "y"):
            f = _file(self.root, "train", part)
            if not f.exists():
                raise MetadbError(f"{f} not found; expected camelyonpatch_level_2_split_{{train,valid,test}}_{{x,y}}.h5")
        import h5py

        for s in self._splits():
            for part in ("x", "y"):
                try:
                    with h5py.File(_file(self.root, s, part), "r") as h:
                        if part not in h:
                            raise MetadbError(f"{_file(self.root, s, part)}: no dataset '{part}'; not a PatchCamelyon file")
                except OSError as e:
                    raise MetadbError(f"{_file(self.root, s, part)}: not a readable HDF5 file ({e})") from None
        subset = self.params.get("subset")
        if subset is not None:
            n = self._length("train")
            if not 0 < subset <= n:
                raise MetadbError(f"subset={subset} but {_file(self.root, 'train', 'x')} holds {n} patches")

    def _length(self, split: str) -> int:
        import h5py

        with h5py.File(_file(self.root, split, "x"), "r") as h:
            return int(h["x"].shape[0])

    def input_files(self) -> list[Path]:
        return [_file(self.root, s, p) for s in self._splits() for p in ("x", "y")]

    def class_names(self) -> list[str]:
        return ["0", "1"]

    def subset_indices(self) -> np.ndarray | None:
        subset = self.params.get("subset")
        if subset is None:
            return None
        rng = np.random.default_rng(self.params.get("seed", 0))
        return np.sort(rng.choice(self._length("train"), size=subset, replace=False))

    def read(self) -> Iterator[Record]:
        import h5py

        chosen = self.subset_indices()
        for split in ["train"] if chosen is not None else self._splits():
            with h5py.File(_file(self.root, split, "x"), "r") as hx, h5py.File(_file(self.root, split, "y"), "r") as hy:
                n = hx["x"].shape[0]
                indices = chosen if chosen is not None else np.arange(n)
                for start in range(0, len(indices), CHUNK):
                    idx = indices[start:start + CHUNK]
                    lo, hi = int(idx[0]), int(idx[-1]) + 1  # one contiguous read, then pick
                    xs = hx["x"][lo:hi][idx - lo]
                    ys = hy["y"][lo:hi].reshape(hi - lo, -1)[idx - lo, 0]
                    for i, x, y in zip(idx, xs, ys):
                        rel = f"{_file(self.root, split, 'x').name}#{i}"
                        yield Record(f"{split}/{i}", rel, (str(int(y)),), split, pixels=x)
