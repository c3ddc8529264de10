"""Find the SQL that ships with metadb: from a checkout or editable install, or from the wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def sql_dir(kind: str) -> Path:
    """`schema` or `queries`: the checkout's top-level folder, else the wheel's metadb/_<kind>."""
    local = _CHECKOUT / kind
    if local.is_dir() and any(local.glob("*.sql")):
        return local
    return _PACKAGE / f"_{kind}"  # pyproject maps schema/ and queries/ here in the wheel


def sql_files(kind: str) -> list[Path]:
    return sorted(sql_dir(kind).glob("*.sql"))
