"""The one writer of reports: every file built in memory, then published whole or not at all.

:func:`write_report` renders every file of a report from a :class:`~.data.ReportData`:
``metrics.csv``, ``metrics.json``, ``per_image.csv``, ``report.md``, one PNG per figure,
``report.html`` and ``run.json``. Each figure is built once and rendered to PNG once; the HTML
embeds the very bytes written to the PNG files. The HTML tables are rendered from the same
table data as the Markdown (no Markdown round trip).

Whole or nothing: the files are written into a temporary sibling folder with
``manifest.json`` (the completion marker, written last), which then replaces the output
folder by renames (:mod:`xai_pool.atomic`: the next run removes a killed writer's staging
folder and puts back a report it had moved aside). When the output folder also holds files
that are not the report's (the demo keeps its trained stream there), the report's files are
moved in one by one after the old marker is removed, and the marker is written last: a
folder without ``manifest.json`` is incomplete, and :func:`is_complete` says so. Timings and
the number of processes go to ``run.json`` only, so that the other files of two runs on the
same data are identical.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import validation
from ..atomic import atomic_write_bytes, fsync_dir, make_staging_dir, remove_stale_temp_files, replace_directory
from ..csvfile import csv_text, escape_cell
from .data import SCHEMA_VERSION, ReportData
from .figures import build_figures
from .tables import findings, legend, markdown_report, per_image_rows, report_tables, table_html, wide_rows

__all__ = [
    "FIGURE_DPI",
    "MANIFEST",
    "check_output_dir",
    "csv_cell",
    "is_complete",
    "metrics_csv",
    "metrics_dict",
    "per_image_csv",
    "render_figures",
    "report_files",
    "report_html",
    "report_markdown",
    "write_report",
]

#: resolution of the figures, in the PNG files and in the HTML alike
FIGURE_DPI = 150
#: the completion marker of a report folder
MANIFEST = "manifest.json"

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px} th{background:#f3f3f3}
td.l{text-align:left} td.r{text-align:right}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
.note{color:#555;font-size:0.9em}
"""


# ---------------------------------------------------------------------- file contents
def render_figures(data: ReportData) -> dict[str, bytes]:
    """``{file stem: PNG bytes}``: each figure built once and rendered once at :data:`FIGURE_DPI`."""
    pngs = {}
    for name, fig in build_figures(data).items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white")
        pngs[name] = buffer.getvalue()
    return pngs


def _number_cell(value: Any) -> Any:
    """Floats with 6 significant digits, NaN and None as empty cells, anything else as it is."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    return value


def csv_cell(value: Any) -> Any:
    """A report CSV cell: numbers with 6 significant digits, NaN/None empty, text escaped.

    Args:
        value: a number, None or text.

    Returns:
        The cell; text a spreadsheet would run as a formula is escaped by
        :func:`xai_pool.csvfile.escape_cell`.
    """
    return escape_cell(_number_cell(value))


def metrics_csv(data: ReportData) -> str:
    """``metrics.csv``: one row per method x pooling with every metric, its CI, raw and adjusted p."""
    rows = wide_rows(data)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return csv_text(({k: _number_cell(row.get(k)) for k in columns} for row in rows), columns)


def per_image_csv(data: ReportData) -> str:
    """``per_image.csv``: one row per image x method x pooling (probability with 6 decimals)."""
    header, rows = per_image_rows(data)
    at = header.index("probability")
    return csv_text(([f"{v:.6f}" if i == at else _number_cell(v) for i, v in enumerate(row)] for row in rows), header)


def metrics_dict(data: ReportData) -> dict[str, Any]:
    """``metrics.json``: versions, configuration, accuracy, summary, paired tests, mean curves with their x."""
    import torch

    from .._version import __version__

    curves = {
        kind: {
            "x": data.curve_x[kind].tolist(),
            "mean": {
                f"{method}/{pooling}": c[f"{kind}_curve"].tolist()
                for (method, pooling), c in data.mean_curves.items()
                if f"{kind}_curve" in c
            },
        }
        for kind in data.curve_x
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "xai_pool_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "n_images": data.n_images,
        "confidence": data.confidence,
        "p_adjustment": data.p_adjustment,
        "alpha": data.alpha,
        "config": data.config,
        "accuracy": data.accuracy,
        "summary": [{k: _json_value(v) for k, v in row.items()} for row in data.summary],
        "tests": [{k: _json_value(v) for k, v in test.items()} for test in data.tests],
        "curves": curves,
        "examples": [int(i) for i in data.examples.indices] if data.examples is not None else [],
        "findings": findings(data),
    }


def report_markdown(data: ReportData, title: str) -> str:
    """``report.md``: the title, the findings and every table."""
    return f"# {title}\n\n{findings(data)}\n\n{markdown_report(data)}"


def report_html(data: ReportData, title: str, pngs: dict[str, bytes]) -> str:
    """``report.html``: one self-contained page (figures embedded as the given PNG bytes)."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(findings(data))}</p>",
        *(table_html(table) for table in report_tables(data)),
    ]
    for name, png in pngs.items():
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h2>{html.escape(name.replace('_', ' '))}</h2><img alt='{html.escape(name)}' "
            f"src='data:image/png;base64,{encoded}'>"
        )
    parts.append(f"<p class='note'>{data.n_images} images. {html.escape(legend(data))}</p></body></html>")
    return "\n".join(parts)


def report_files(data: ReportData, *, title: str, run_info: dict[str, Any] | None = None) -> dict[str, bytes]:
    """Every file of the report, ``{name: bytes}``, built in memory (each figure once)."""
    pngs = render_figures(data)
    files = {
        "metrics.csv": metrics_csv(data).encode(),
        "metrics.json": (json.dumps(metrics_dict(data), indent=2) + "\n").encode(),
        "per_image.csv": per_image_csv(data).encode(),
        "report.md": report_markdown(data, title).encode(),
        **{f"{name}.png": png for name, png in pngs.items()},
        "report.html": report_html(data, title, pngs).encode(),
    }
    info = {"seconds": round(data.seconds, 2), **data.runtime, **(run_info or {})}
    files["run.json"] = (json.dumps(info, indent=2, default=str) + "\n").encode()
    return files


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------------- publishing
def check_output_dir(out: str | os.PathLike, *, name: str = "out") -> Path:
    """Fail early, with a clear message, when ``out`` cannot become the report folder.

    :func:`xai_pool.validation.check_output_dir` on the resolved path (``"."`` or ``"dir/.."``
    get a real name, so that the staging sibling folder is well defined). Nothing is created.

    Args:
        out: the report folder.
        name: the argument's name in messages (the CLI passes ``--out``).

    Returns:
        ``out``, resolved.

    Raises:
        NotADirectoryError: ``out`` or one of its parents is a file.
        PermissionError: the folder, or the parent it would be created in, is not writable.
        OSError: another reason the folder cannot be written (read-only file system, ...).
    """
    return validation.check_output_dir(Path(out).resolve(), name=name)


def is_complete(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds a complete report: its manifest exists and lists files that all exist."""
    path = Path(out) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest.get("complete")) and all((Path(out) / name).is_file() for name in manifest.get("files", []))


def write_report(
    data: ReportData, out: str | os.PathLike, *, title: str, run_info: dict[str, Any] | None = None
) -> list[Path]:
    """Write every report file to ``out``, whole or not at all (see the module docstring).

    Args:
        data: the report.
        out: the output folder (created; a previous report in it is replaced).
        title: the report's title (HTML and Markdown).
        run_info: extra JSON-ready facts for ``run.json`` (configuration, device, timings).

    Returns:
        The paths of the files written, ``manifest.json`` last.

    Raises:
        OSError: ``out`` cannot be written (see :func:`check_output_dir`).
    """
    out = check_output_dir(out)
    files = report_files(data, title=title, run_info=run_info)
    remove_stale_temp_files(out.parent, target=out.name)  # staging or moved-aside folders of killed writers
    staging = make_staging_dir(out)
    try:
        for name, content in files.items():
            atomic_write_bytes(staging / name, content)
        manifest = {"schema_version": SCHEMA_VERSION, "complete": True, "files": sorted(files)}
        atomic_write_bytes(staging / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _publish(staging, out, set(files))
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when it became ``out``
    return [out / name for name in files] + [out / MANIFEST]


def _previous_files(out: Path) -> set[str]:
    try:
        return set(json.loads((out / MANIFEST).read_text()).get("files", []))
    except (OSError, ValueError):
        return set()


def _publish(staging: Path, out: Path, names: set[str]) -> None:
    previous = _previous_files(out) if out.exists() else set()
    foreign = set(os.listdir(out)) - previous - names - {MANIFEST} if out.exists() else set()
    cwd = Path.cwd().resolve()
    if not foreign and out != cwd and out not in cwd.parents:  # a report folder (or none yet): replace it whole
        replace_directory(staging, out)
        return
    # The folder holds other things (e.g. the demo's stream/), or is the working directory:
    # without its marker it reads as incomplete until every file is in place and the new
    # marker is written. Each file is complete (fsynced) before it is renamed into place.
    (out / MANIFEST).unlink(missing_ok=True)
    for name in sorted(names):
        os.replace(staging / name, out / name)
    for name in previous - names:
        (out / name).unlink(missing_ok=True)
    os.replace(staging / MANIFEST, out / MANIFEST)
    fsync_dir(out)
