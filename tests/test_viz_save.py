"""xai_pool.viz.save_figure: PNG/SVG by extension, atomic, valid files."""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from xai_pool.viz import insertion_deletion_curves, save_figure, side_by_side

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# xai_pool.viz builds matplotlib Figures outside pyplot: none may be left in pyplot's registry
pytestmark = pytest.mark.usefixtures("no_pyplot_figures_left")


@pytest.fixture
def fig() -> Figure:
    return insertion_deletion_curves({("gradcam", "ca"): np.linspace(0, 1, 5)})


def test_png_and_svg_are_valid(tmp_path: Path, fig: Figure) -> None:
    png = save_figure(fig, tmp_path / "curve.png")
    svg = save_figure(fig, tmp_path / "sub" / "curve.SVG")  # parent created, case-insensitive
    assert png.read_bytes().startswith(PNG_SIGNATURE) and png.stat().st_size > 1000
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["curve.SVG", "curve.png", "sub"]  # no temp files


def test_image_grid_png_has_the_figure_pixel_size(tmp_path: Path) -> None:
    from PIL import Image

    grid = side_by_side(np.random.rand(1, 8, 8, 3), raw_attention=np.random.rand(1, 2, 2), colorbar=False)
    width, height = (grid.get_size_inches() * 150).round().astype(int)  # save_figure: dpi=150
    with Image.open(save_figure(grid, tmp_path / "grid.png", dpi=150)) as png:
        assert png.format == "PNG" and png.size == (width, height)


def test_file_gets_normal_permissions(tmp_path: Path, fig: Figure) -> None:
    mask = os.umask(0)
    os.umask(mask)
    path = save_figure(fig, tmp_path / "f.png")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_failed_save_leaves_old_file_and_no_temp(tmp_path: Path, fig: Figure, monkeypatch) -> None:
    path = tmp_path / "f.png"
    path.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_bad_arguments(tmp_path: Path, fig: Figure) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        save_figure(fig, tmp_path / "f.jpg")
    with pytest.raises(TypeError, match="Figure"):
        save_figure(np.zeros((4, 4, 3)), tmp_path / "f.png")
