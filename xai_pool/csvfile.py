"""CSV output that spreadsheets cannot execute: one home for every CSV file xai_pool writes.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by Excel, LibreOffice and Google Sheets (CSV injection). Following the OWASP advice,
such text cells are prefixed with a single quote, which spreadsheets show as text. Numbers
are left alone: int and float values, and strings that are a plain decimal number (``-0.5``,
``+3``, ``1e-4``), cannot run anything and must stay numeric. Quoting of commas, quotes and
newlines is the ``csv`` module's.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

__all__ = ["escape_cell", "csv_text", "write_csv"]

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def escape_cell(value: Any) -> Any:
    """``value``, with a leading ``'`` if it is text a spreadsheet would run as a formula.

    Example:
        >>> escape_cell("=1+2"), escape_cell("-0.25"), escape_cell(-3), escape_cell("cat")
        ("'=1+2", '-0.25', -3, 'cat')
    """
    if isinstance(value, str) and value.startswith(_TRIGGERS) and not _NUMBER.match(value):
        return "'" + value
    return value


def csv_text(rows: Iterable[Mapping[str, Any] | Sequence[Any]], fieldnames: Sequence[str] | None = None) -> str:
    r"""The CSV text of ``rows`` with every cell (and header) escaped by :func:`escape_cell`.

    Args:
        rows: dicts (then ``fieldnames``, default the first row's keys, gives the columns;
            missing keys become empty cells, unknown keys are an error) or sequences (then ``fieldnames`` is an optional
            header).
        fieldnames: column names.

    Returns:
        The text, with ``\r\n`` line ends as the csv module writes them.
    """
    rows = list(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    dicts = bool(rows) and isinstance(rows[0], Mapping)
    if fieldnames is None and dicts:
        fieldnames = list(rows[0])
    if fieldnames is not None:
        writer.writerow([escape_cell(name) for name in fieldnames])
    for row in rows:
        if isinstance(row, Mapping):
            extra = [key for key in row if key not in fieldnames]  # type: ignore[operator]
            if extra:
                raise ValueError(f"a row has columns {extra} that are not in fieldnames {list(fieldnames or ())}")
            cells = [row.get(name, "") for name in fieldnames]  # type: ignore[union-attr]
        else:
            cells = list(row)
        writer.writerow([escape_cell(cell) for cell in cells])
    return buffer.getvalue()


def write_csv(
    path: str | os.PathLike, rows: Iterable[Mapping[str, Any] | Sequence[Any]], fieldnames: Sequence[str] | None = None
) -> Path:
    """Write :func:`csv_text` of ``rows`` to ``path`` atomically (see :mod:`xai_pool.atomic`)."""
    return atomic_write_text(path, csv_text(rows, fieldnames))
