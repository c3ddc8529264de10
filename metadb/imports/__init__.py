"""Import published or in-house results: fine-tuning outcomes, transferability scores, distances.

Every importer turns files into rows of one table. All files a command matches are parsed and
validated first (column-wise, with polars; `cells`), then committed together in one transaction
with one row per file in `imports` (the file's sha256 plus the options; `commit`). So a bad cell in
the seventh of twelve files leaves the store as it was, and re-importing a file adds nothing.
Dataset names are mapped through the catalog (aliases such as `blood` -> `bloodmnist`) unless the
import says otherwise, and every import reports what it mapped; names the store does not hold
become flagged stubs (`datasets.is_stub`). Rows reach DuckDB through a temporary Parquet file, so
one `INSERT ... BY NAME` reads them with the table's types and no Python object is scanned.
"""

from metadb.imports.cells import ImportResult, Parsed, canonical
from metadb.imports.commit import import_files
from metadb.imports.distances import import_similarities
from metadb.imports.outcomes import import_outcomes
from metadb.imports.scores import import_scores, store_combination

__all__ = ["ImportResult", "Parsed", "canonical", "import_files", "import_outcomes", "import_scores",
           "import_similarities", "store_combination"]
