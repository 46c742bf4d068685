"""Notebook output: plain text for logs and tests, HTML for the page, updated in place.

Outside IPython (a script, a terminal) every display prints its plain text instead.
"""

from __future__ import annotations

import html
from typing import Any


def show(text: str, page: str | None = None, handle: Any = None) -> Any:
    """Display (or update in place) plain text + HTML; print the text outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is None or get_ipython() is None:
        print(text)
        return None
    data = {"text/plain": text, "text/html": page or pre(text)}
    if handle is None:
        return display(data, raw=True, display_id=True)
    handle.update(data, raw=True)
    return handle


def pre(text: str) -> str:
    return f"<pre style='white-space:pre-wrap'>{html.escape(text)}</pre>"


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    cell = "<{0} style='text-align:left;vertical-align:top'>{1}</{0}>"
    head = "".join(cell.format("th", html.escape(h)) for h in header)
    body = "".join(
        "<tr>" + "".join(cell.format("td", html.escape(str(c))) for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
