"""Dataset distance measures, one module each, registered by name and version.

A measure's `pairwise(con, datasets, backbone)` returns {(a, b): distance} for the requested
pairs from what the store holds (embedding statistics, per-image embeddings, meta-features);
`inputs(con, dataset, backbone)` names what a dataset's distances were computed from, so cached
values are recomputed only when that changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar

from metadb.registry import Registry


class Measure:
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    symmetric: ClassVar[bool] = True
    needs_backbone: ClassVar[bool] = True

    def __init__(self, **params: Any):
        self._params = params

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def inputs(self, con, dataset: str, backbone: str) -> str:
        """Fingerprint of this dataset's inputs: by default its embedding run."""
        row = con.execute("SELECT run_id FROM embedding_runs WHERE dataset = ? AND backbone = ?",
                          [dataset, backbone]).fetchone()
        return row[0] if row else ""

    def pairwise(self, con, pairs: list[tuple[str, str]], backbone: str) -> dict[tuple[str, str], float]:
        raise NotImplementedError


measures: Registry[type[Measure]] = Registry("measure")
register_measure = measures.register_class
create_measure = measures.create


for _mod in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_mod.name}")
