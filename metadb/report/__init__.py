"""`metadb report`: the store as one self-contained HTML page (figures as inline SVG, styles and
the table-sorting script inline, no network at view time), for a paper's supplement.

Each section appears only when the store holds its data; see `metadb.report.sections`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template

from metadb import api
from metadb.errors import MetadbError
from metadb.report import robustness, sections
from metadb.report.html import Section

SECTIONS = [sections.datasets, sections.similarity, sections.best_source, sections.metric_agreement,
            sections.predictors, sections.runs, robustness.section]


def _asset(name: str) -> str:
    return files("metadb.report").joinpath("assets", name).read_text(encoding="utf-8")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("metadb")
    except PackageNotFoundError:
        import metadb

        return metadb.__version__


def build(db: str | Path | None = None, target: str | None = None) -> str:
    """The report's HTML for the store `db` (default store when None), optionally for one target."""
    from metadb import store

    path = Path(db) if db is not None else store.default_path()
    ctx = sections.Context(path, target)
    if target:
        names = [r[0] for r in api.sql("SELECT name FROM datasets ORDER BY 1", path)[1]]
        if target not in names:
            raise MetadbError(f"target {target!r} is not in the store {path}",
                              f"datasets: {', '.join(names[:12]) or 'none'}{' ...' if len(names) > 12 else ''}")
    version = _version()
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    found: list[Section] = [s for s in (make(ctx) for make in SECTIONS) if s is not None]
    found.append(sections.provenance(ctx, version, generated))
    title = "metadb report" + (f": target {target}" if target else "")
    shown = ", ".join(s.title.lower() for s in found[:-1]) or "nothing yet (ingest or import something first)"
    return Template(_asset("page.html")).substitute(
        title=escape(title), version=escape(version), generated=generated, store=escape(str(path.resolve())),
        css=_asset("report.css"), js=_asset("report.js"),
        lede=escape(f"What the store holds: {shown}."),
        toc="".join(f'<li><a href="#{s.id}">{escape(s.title)}</a></li>' for s in found),
        sections="\n".join(f'<section id="{s.id}" aria-labelledby="{s.id}-h"><h2 id="{s.id}-h">{escape(s.title)}</h2>'
                           f"{s.body}</section>" for s in found))


def write(out: str | Path, db: str | Path | None = None, target: str | None = None) -> tuple[Path, int]:
    """Build the report and write it atomically to `out`; returns (path, bytes)."""
    out = Path(out)
    if out.parent and not out.parent.is_dir():
        raise MetadbError(f"folder {out.parent} does not exist (for report {out})")
    page = build(db, target).encode("utf-8")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(page)
    tmp.replace(out)
    return out, len(page)
