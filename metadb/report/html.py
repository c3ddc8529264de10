"""HTML pieces of the report: escaped cells, sortable tables, figures, sections."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from html import escape
from typing import Any


@dataclass
class Section:
    """One <section> of the page; `id` is its anchor in the table of contents."""

    id: str
    title: str
    body: str


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def cell(value: Any) -> tuple[str, str]:
    """(shown text, sort key) of one value; numbers sort as numbers, NULLs last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}", repr(value)
    if isinstance(value, int):
        return str(value), str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)), ", ".join(map(str, value))
    if isinstance(value, dict):
        text = json.dumps(value, default=str)
        return text, text
    return str(value), str(value)


def table(cols: list[str], rows: list[tuple], caption: str, table_id: str, numeric_hint: bool = True) -> str:
    """A sortable table of whatever columns a query returned (click a header to sort by it)."""
    numeric = [all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for r in rows if r[k] is not None)
               for k in range(len(cols))] if numeric_hint else [False] * len(cols)
    head = "".join(f'<th scope="col" aria-sort="none"{" class=num" if numeric[k] else ""}>'
                   f'<button type="button">{escape(c)}</button></th>' for k, c in enumerate(cols))
    body = []
    for r in rows:
        tds = []
        for k, v in enumerate(r):
            text, key = cell(v)
            tds.append(f'<td data-sort="{escape(key)}"{" class=num" if numeric[k] else ""}>{escape(text)}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{escape(table_id)}">'
            f"<caption>{caption}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def figure(svg: str, caption: str) -> str:
    return f'<figure><div class="plot">{svg}</div><figcaption>{caption}</figcaption></figure>'


def code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def details(summary: str, body: str) -> str:
    """Long tables folded away (open them to read or sort)."""
    return f"<details><summary>{escape(summary)}</summary>{body}</details>"
