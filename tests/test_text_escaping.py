"""Text that reaches matplotlib is shown verbatim (never mathtext), and CSV cells that a
spreadsheet would run as formulas are escaped."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from xai_pool.csvfile import csv_text, escape_cell, write_csv
from xai_pool.viz import attention_grid, insertion_deletion_curves, metric_bars, side_by_side
from xai_pool.viz._style import plain_text

BOGUS = r"$\bogus$"


def _draw(fig: Figure) -> None:
    fig.savefig(io.BytesIO(), format="png")


def _shown(fig: Figure) -> set[str]:
    """Every text of the figure as matplotlib will render it (after its own unescaping)."""
    _draw(fig)
    texts = set()
    for text in fig.findobj(lambda artist: hasattr(artist, "_preprocess_math")):
        rendered, is_math = text._preprocess_math(text.get_text())
        assert not is_math, text.get_text()
        texts.add(rendered)
    return texts


def test_unescaped_mathtext_really_crashes_matplotlib() -> None:
    # The control: without plain_text, such a class name fails at draw time.
    fig = Figure()
    fig.add_subplot().set_title(BOGUS)
    with pytest.raises(ValueError):
        _draw(fig)


def test_plain_text_keeps_every_character() -> None:
    for text in (BOGUS, "cost $5", r"a\$b", "$x$ and $y$", "back\\slash", "50%_#&"):
        fig = Figure()
        fig.add_subplot().set_title(plain_text(text))
        assert _shown(fig) >= {text}


def test_a_class_named_like_mathtext_in_figure_titles_and_labels() -> None:
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = np.random.default_rng(0).random((2, 4, 4)).astype(np.float32)
    fig = side_by_side(
        images,
        methods={"gradcam": {"gap": maps, "ca": maps}},
        columns={"$col$": maps},
        predictions={"gap": [0, 1], "ca": [1, 0]},
        class_names=[BOGUS, "star"],
        titles=["#1 $true$", "#2"],
        suptitle="run $1$",
    )
    shown = _shown(fig)
    assert "$col$" in shown and "run $1$" in shown
    assert any(BOGUS in text for text in shown) and any("#1 $true$" in text for text in shown)
    grid = attention_grid(images, maps, titles=[BOGUS, "$2$"], suptitle=BOGUS)
    assert BOGUS in _shown(grid)


def test_curves_and_bars_with_dollar_names() -> None:
    x = np.linspace(0, 1, 5)
    fig = insertion_deletion_curves({("$m$", "gap"): x, ("$m$", "ca"): x**2}, kind="deletion", title=BOGUS)
    shown = _shown(fig)
    assert BOGUS in shown and "$m$ / GAP (AUC 50.0)" in shown
    rows = [{"method": "$m$", "pooling": "ca", "metric": "$\\x$", "mean": 1.0, "ci_low": 0.5, "ci_high": 1.5}]
    bars = metric_bars(rows, title=BOGUS)
    assert {BOGUS, "$m$"} <= _shown(bars)


@pytest.mark.parametrize(
    "value, escaped",
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-0.25", "-0.25"),  # a number stays a number
        ("+3", "+3"),
        ("1e-4", "1e-4"),
        ("cat", "cat"),
        ("a=b", "a=b"),
        (-3, -3),
        (0.5, 0.5),
        (None, None),
    ],
)
def test_escape_cell(value, escaped) -> None:
    assert escape_cell(value) == escaped


def test_csv_round_trip_keeps_the_text_behind_the_quote(tmp_path) -> None:
    rows = [{"image": '=HYPERLINK("x")', "p": 0.25, "note": "a,b\nc"}, {"image": "ok.png", "p": -1.5}]
    path = write_csv(tmp_path / "t.csv", rows)
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert read[0] == {"image": '\'=HYPERLINK("x")', "p": "0.25", "note": "a,b\nc"}
    assert read[1] == {"image": "ok.png", "p": "-1.5", "note": ""}
    with pytest.raises(ValueError, match=r"columns \['extra'\] that are not in fieldnames"):
        csv_text([{"a": 1}, {"a": 2, "extra": 3}])
    assert csv_text([[1, "=x"]], ["-h", "k"]) == "'-h,k\r\n1,'=x\r\n"
