"""The tutorial notebooks: stored without outputs, in sync with their generator, and runnable.

Every ``notebooks/*.ipynb`` is picked up by glob. The fast tests check how the files are
stored; the slow test executes each notebook top to bottom in a real Jupyter kernel
(``python3``, the Python running pytest) with the notebooks folder as working directory.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
GENERATOR = ROOT / "scripts" / "build_notebooks.py"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600
KERNEL = "python3"
_PROBE_MARK = "XAI_POOL_KERNEL_PROBE "
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes of IPython tracebacks


def _name(path: Path) -> str:
    return path.name


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_notebooks", GENERATOR)
    assert spec is not None and spec.loader is not None, f"cannot import {GENERATOR}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tutorial_notebooks_exist() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_gap_vs_ca_report.ipynb"} <= names, f"found only {sorted(names)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    kernelspec = nb.metadata.get("kernelspec", {})
    assert kernelspec.get("name") == KERNEL, f"{path.name}: kernelspec is {kernelspec!r}, expected name {KERNEL!r}"
    dirty = [
        f"cell {index} ({len(cell.outputs)} outputs, execution_count {cell.execution_count})"
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name} is stored with outputs: {', '.join(dirty)}. Regenerate it with "
        "`python scripts/build_notebooks.py` (or `jupyter nbconvert --clear-output --inplace`)."
    )


def test_stored_notebooks_match_their_generator() -> None:
    generator = _generator()
    assert generator.NOTEBOOKS, "scripts/build_notebooks.py registers no notebook"
    for name in generator.NOTEBOOKS:
        path = NOTEBOOK_DIR / name
        assert path.is_file(), f"{name} is registered in {GENERATOR.name} but missing; run python {GENERATOR}"
        assert path.read_text(encoding="utf-8") == generator.render(name), (
            f"{name} differs from what {GENERATOR.name} writes: edit the generator, not the notebook, "
            f"then run `python scripts/build_notebooks.py`"
        )


def _files_under(folder: Path) -> set[str]:
    # Notebooks themselves are left out: someone may add or save one while the tests run.
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts and p.suffix != ".ipynb"
    }


def _figures_shown_as_text(nb: nbformat.NotebookNode) -> list[int]:
    """Cells that displayed a matplotlib Figure as its text repr instead of an image."""
    bad = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if str(data.get("text/plain", "")).startswith("<Figure size") and "image/png" not in data:
                bad.append(index)
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_notebook_runs_top_to_bottom(path: Path) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
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
    shown_as_text = [index - 1 for index in _figures_shown_as_text(nb)]  # index in the stored notebook
    assert not shown_as_text, (
        f"{path.name}: cells {shown_as_text} displayed a figure as '<Figure size ...>' text, not an image; "
        "xai_pool.viz figures are not pyplot figures: run `%matplotlib inline` first"
    )
    written = _files_under(NOTEBOOK_DIR) - before
    assert not written, f"{path.name} wrote into the repository: {sorted(written)}; write to tempfile.mkdtemp()"
