"""A self-contained HTML report (images embedded as base64; opens offline)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any


def img_tag(png: bytes, alt: str, width: int | None = None) -> str:
    """An ``<img>`` with the PNG inlined."""
    size = f' width="{width}"' if width else ""
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"{size}>'


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain HTML table; floats shown with 3 decimals."""
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d2330}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccd;
padding:4px 10px;text-align:right}th{background:#eef}figure{display:inline-block;margin:6px;
font-size:12px;vertical-align:top}.note{background:#fff6d6;padding:.6em 1em;border-radius:6px}"""


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """Assemble a full HTML document from ``(heading, html)`` sections."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}"
            "</body></html>\n")
