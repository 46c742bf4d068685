"""Notebook output: plain text for logs and tests, HTML for the page, updated in place.

Outside IPython (a script, a terminal) every display prints its plain text instead.
"""

from __future__ import annotations

import html
from typing import Any

GIB = 1024**3


def _ipython_display() -> Any:
    """IPython's display function inside an IPython shell (a notebook kernel), else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    return display if get_ipython() is not None else None


def show(text: str, page: str | None = None, handle: Any = None) -> Any:
    """Display (or update in place) plain text + HTML; print the text outside IPython."""
    display = _ipython_display()
    if display is None:
        print(text)
        return None
    data = {"text/plain": text, "text/html": page or pre(text)}
    if handle is None:
        return display(data, raw=True, display_id=True)
    handle.update(data, raw=True)
    return handle


def show_png(png: bytes, handle: Any = None) -> Any:
    """Display (or update in place) an image; nothing outside IPython (no screen to draw on)."""
    display = _ipython_display()
    if display is None:
        return None
    from IPython.display import Image

    img = Image(data=png, format="png")
    if handle is None:
        return display(img, display_id=True)
    handle.update(img)
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


def say(message: str) -> None:
    """run_job's `say` in a notebook."""
    # The job cell already shows the resolved spec run_job starts with: print its first line.
    first = message.partition("\n")[0]
    print(first if first.startswith("kubetune: ") and "resolved spec" in first else message)
