"""Dataset distance measures, one module each, registered by name and version.

A measure's `pairwise(con, datasets, backbone)` returns {(a, b): distance} for the requested
pairs from what the store holds (embedding statistics, per-image embeddings, meta-features);
`inputs(con, dataset, backbone)` names what a dataset's distances were computed from, so cached
values are recomputed only when that changes. `backbone` is a backbone identity (`arch.tag`, see
metadb.backbones), i.e. one feature space; a measure that needs the network itself re-creates it
with `metadb.backbones.model_for(con, backbone, device)`.

Optional hooks: `prepare(con, datasets, backbone)` fixes parameters shared by the whole matrix
(MMD's bandwidth) before any pair is computed; they are recorded with every pair and are part of
its cache key. `details_[(a, b)]` holds what a pair's computation decided (e.g. how much OAS
shrinkage it applied), recorded in `similarities.params`. Measures with `shrinks = True` take
`shrinkage='oas'|'none'`.
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
    shrinks: ClassVar[bool] = False  # takes shrinkage='oas'|'none' (covariance shrinkage when n < D)

    def __init__(self, **params: Any):
        self._params = params
        self.details_: dict[tuple[str, str], dict[str, Any]] = {}

    def params(self) -> dict[str, Any]:
        """The parameters a value depends on; a shrinking measure always records its shrinkage (default oas)."""
        return {"shrinkage": "oas", **self._params} if self.shrinks else dict(self._params)

    def prepare(self, con, datasets: list[str], backbone: str) -> dict[str, Any]:
        """Parameters fixed for a whole matrix of these datasets, before any pair; none by default."""
        return {}

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
