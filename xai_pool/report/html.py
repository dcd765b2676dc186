"""A self-contained HTML report: the tables, the findings, and the figures as base64 PNG."""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import ComparisonResult

__all__ = ["render_html", "figure_png_bytes", "markdown_table_to_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,td:nth-child(2){text-align:left}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
.note{color:#555;font-size:0.9em}
"""


def figure_png_bytes(fig, dpi: int = 110) -> bytes:
    """Render a matplotlib Figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def markdown_table_to_html(markdown: str) -> str:
    """Convert the pipe tables of :meth:`ComparisonResult.to_markdown` to HTML tables."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, body = rows[0], rows[2:]
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append("</table>")
            rows.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            flush()
            if line.strip():
                out.append(f"<p class='note'>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def render_html(result: "ComparisonResult", *, title: str) -> str:
    """The whole report as one HTML string (no external files)."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(result.findings())}</p>",
        markdown_table_to_html(result.to_markdown()),
    ]
    for name, fig in result.figures().items():
        data = base64.b64encode(figure_png_bytes(fig)).decode("ascii")
        parts.append(
            f"<h2>{html.escape(name.replace('_', ' '))}</h2><img alt='{html.escape(name)}' "
            f"src='data:image/png;base64,{data}'>"
        )
    parts.append(
        f"<p class='note'>{result.n_images} images, {result.seconds:.0f} s. "
        "AD and D: lower is better; the others: higher is better.</p></body></html>"
    )
    return "\n".join(parts)
