"""The tutorial notebooks: plain-text jupytext scripts, canonical, and runnable in a real kernel.

Every ``notebooks/*.py`` is a notebook in jupytext's percent format (cells start with
``# %%``); no ``.ipynb`` is stored, jupytext builds it (``jupytext --to ipynb``, or Jupyter
opens the ``.py`` directly with jupytext installed). The fast tests check how the files are
stored; the slow test builds each notebook with jupytext and executes it top to bottom in a
real Jupyter kernel (``python3``, the Python running pytest) with the notebooks folder as
working directory, then checks that figures were rendered as images.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.py"))
CELL_TIMEOUT_S = 600
KERNEL = "python3"
FORMAT = "py:percent"
_PROBE_MARK = "XAI_POOL_KERNEL_PROBE "
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes of IPython tracebacks


def _name(path: Path) -> str:
    return path.name


def test_the_tutorial_notebooks_exist_as_text_only() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert {"01_quickstart.py", "02_gap_vs_ca_report.py", "03_real_photos.py"} <= names, f"found {sorted(names)}"
    stored = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    # a built .ipynb may lie here (git ignores it), but it must not be the only copy of a notebook
    orphans = [name for name in stored if not (NOTEBOOK_DIR / name).with_suffix(".py").is_file()]
    assert not orphans, f"{orphans} have no .py source: convert them with `jupytext --to py:percent`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_notebook_is_canonical_percent_format_python(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    nb = jupytext.reads(text, FORMAT)
    nbformat.validate(nb)
    kernelspec = nb.metadata.get("kernelspec", {})
    assert kernelspec.get("name") == KERNEL, f"{path.name}: kernelspec is {kernelspec!r}, expected name {KERNEL!r}"
    assert jupytext.writes(nb, FORMAT) == text, (
        f"{path.name} is not in jupytext's canonical percent format, so saving it from Jupyter would rewrite it: "
        f"run `jupytext --to py:percent {path.relative_to(ROOT)}`"
    )
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and sum(cell.cell_type == "markdown" for cell in nb.cells) >= 3, "a tutorial is code with prose"
    ast.parse(text, filename=str(path))  # magics are comments in this format: the file is plain Python


def _files_under(folder: Path) -> set[str]:
    # Built .ipynb files are left out: someone may build or save one while the tests run.
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts and p.suffix != ".ipynb"
    }


_FIGURE_EXPRESSION = re.compile(
    r"^(fig|figures\[.*\]|.*\b(Figure|side_by_side|attention_grid|metric_bars|insertion_deletion_curves)\(.*)$",
    re.DOTALL,
)


def _cells_ending_with_a_figure(nb: nbformat.NotebookNode) -> list[int]:
    """Code cells whose last statement is a figure expression, which Jupyter displays."""
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%"))
        body = ast.parse(source).body
        if body and isinstance(body[-1], ast.Expr) and _FIGURE_EXPRESSION.match(ast.unparse(body[-1].value)):
            cells.append(index)
    return cells


def _figures(nb: nbformat.NotebookNode) -> tuple[list[int], list[int]]:
    """Cells that displayed a PNG image, and cells that displayed a Figure as its text repr instead."""
    images, as_text = [], []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                images.append(index)
            elif str(data.get("text/plain", "")).startswith("<Figure size"):
                as_text.append(index)
    return images, as_text


def _stderr(nb: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_notebook_runs_top_to_bottom(path: Path) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = jupytext.read(path, fmt=FORMAT)
    figure_cells = _cells_ending_with_a_figure(nb)
    # A first cell (in memory only) reports which Python the kernel runs.
    report = "json.dumps({'executable': sys.executable, 'prefix': sys.prefix})"
    probe = f"import json, sys\nprint({_PROBE_MARK!r} + {report})"
    nb.cells.insert(0, nbformat.v4.new_code_cell(probe))
    before = _files_under(NOTEBOOK_DIR)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's working directory
    )
    started = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:  # its message holds the failing cell's source and traceback
        pytest.fail(f"{path.name}: a cell raised an error\n{_ANSI.sub('', str(exc))}", pytrace=False)
    print(f"\n{path.name}: executed in {time.perf_counter() - started:.1f} s")

    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.get("output_type") == "stream")
    assert _PROBE_MARK in text, f"the kernel probe printed nothing: {nb.cells[0].outputs!r}"
    kernel = json.loads(text.split(_PROBE_MARK, 1)[1].strip().splitlines()[0])
    assert kernel["prefix"] == sys.prefix, (
        f"the {KERNEL!r} kernel runs {kernel['executable']} (prefix {kernel['prefix']}), not the Python "
        f"running pytest ({sys.executable}, prefix {sys.prefix}): the notebook tested another installation"
    )
    images, as_text = _figures(nb)
    images = [index - 1 for index in images]  # index in the notebook file, without the probe cell
    shown_as_text = [index - 1 for index in as_text]
    assert not shown_as_text, (
        f"{path.name}: cells {shown_as_text} displayed a figure as '<Figure size ...>' text, not an image; "
        "xai_pool.viz figures are not pyplot figures: run `%matplotlib inline` first"
    )
    missing = [index for index in figure_cells if index not in images]
    assert images and not missing, f"{path.name}: cells {missing} build a Figure but displayed no PNG image"
    assert "IProgress not found" not in _stderr(nb), "tqdm.auto found no ipywidgets: progress bars fell back to text"
    written = _files_under(NOTEBOOK_DIR) - before
    assert not written, f"{path.name} wrote into the repository: {sorted(written)}; write to tempfile.mkdtemp()"
