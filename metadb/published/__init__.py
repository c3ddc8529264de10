"""Published evidence packs: the result tables of the studies metadb is built on, with citations.

`listing()` describes them, `import_packs(db, names)` imports them through the importers users'
files go through (origin `published:<pack>@<version>` on every row), and `verify(name)`
recomputes a study's headline figures from its pack. `python -m metadb.published.build`
writes the packs from the published files.
"""

from metadb.published.importer import import_packs
from metadb.published.packs import Pack, all_packs, describe, get, listing, names
from metadb.published.verify import verify

__all__ = ["Pack", "all_packs", "describe", "get", "import_packs", "listing", "names", "verify"]
