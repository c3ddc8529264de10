"""Kept so `metadb.outcomes.import_outcomes` and friends stay importable; the code lives in metadb.imports."""

from metadb.imports import (ImportResult, Parsed, canonical, import_files, import_outcomes, import_scores,
                            import_similarities, store_combination)

__all__ = ["ImportResult", "Parsed", "canonical", "import_files", "import_outcomes", "import_scores",
           "import_similarities", "store_combination"]
