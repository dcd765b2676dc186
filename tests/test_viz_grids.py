"""xai_pool.viz.side_by_side and attention_grid: layout, headers, row labels, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from xai_pool.viz import attention_grid, side_by_side

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
NAMES = ("circle", "square", "star")


# xai_pool.viz builds matplotlib Figures outside pyplot: none may be left in pyplot's registry
pytestmark = pytest.mark.usefixtures("no_pyplot_figures_left")


def _maps(b: int, h: int = 4, w: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((b, h, w)).astype(np.float32)


def _images(b: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.25


def _methods(b: int) -> dict:
    return {
        "gradcam": {"gap": _maps(b, seed=1), "ca": _maps(b, seed=2)},
        "gradcampp": {"ca": _maps(b, seed=3), "gap": _maps(b, seed=4)},  # order given: CA first
        "scorecam": {"gap": torch.from_numpy(_maps(b, seed=5)), "ca": _maps(b, seed=6)},
    }


def _image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images]


def test_side_by_side_layout_like_paper_figure_2() -> None:
    fig = side_by_side(
        _images(),
        raw_attention=torch.rand(2, 1, 4, 4),  # (B, heads, h, w) as CAModel.attention returns
        methods=_methods(2),
        predictions={"gap": torch.tensor([0, 2]), "ca": [0, 1]},
        class_names=NAMES,
        titles=["#0", "#1"],
        mean=MEAN,
        std=STD,
        colorbar=False,
    )
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * (2 + 6)
    headers = [ax.get_title() for ax in fig.axes[:8]]
    assert headers == [
        "Input",
        "Raw attention",
        "Grad-CAM GAP",
        "Grad-CAM CA",
        "Grad-CAM++ GAP",
        "Grad-CAM++ CA",
        "Score-CAM GAP",
        "Score-CAM CA",
    ]
    assert all(ax.get_title() == "" for ax in fig.axes[8:])  # headers only on the first row
    assert fig.axes[0].get_ylabel() == "#0\nGAP: circle\nCA: circle"
    assert fig.axes[8].get_ylabel() == "#1\nGAP: star\nCA: square"


def test_side_by_side_colorbar_and_generic_columns() -> None:
    fig = side_by_side(_images(3), columns={"Mine": _maps(3)}, predictions=["a", "b", "c"], mean=MEAN, std=STD)
    assert len(_image_axes(fig)) == 3 * 2
    assert len(fig.axes) == 3 * 2 + 1  # plus the colour bar
    assert [ax.get_title() for ax in fig.axes[:2]] == ["Input", "Mine"]
    assert fig.axes[0].get_ylabel() == "predicted: a"


def test_side_by_side_accepts_lists_and_channels_last_uint8() -> None:
    images = [np.full((10, 12, 3), 128, np.uint8), np.zeros((10, 12, 3), np.uint8)]
    fig = side_by_side(images, methods={"Grad-CAM": {"GAP": list(_maps(2)), "CA": _maps(2)}}, colorbar=False)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["Input", "Grad-CAM GAP", "Grad-CAM CA"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "raw_attention, methods or columns"),
        ({"raw_attention": _maps(3)}, ValueError, "one map per image"),
        ({"methods": [("gradcam", _maps(2))]}, TypeError, "mapping"),
        ({"methods": {"gradcam": _maps(2)}}, TypeError, r"\{pooling: maps\}"),
        ({"methods": {"gradcam": {"gap": _maps(2), "GAP": _maps(2)}}}, ValueError, "twice"),
        ({"raw_attention": _maps(2), "predictions": ["a"]}, ValueError, "one per image"),
        ({"raw_attention": _maps(2), "titles": ["only one"]}, ValueError, "one string per image"),
        ({"raw_attention": _maps(2), "predictions": [0, 7], "class_names": NAMES}, ValueError, "outside class_names"),
    ],
)
def test_side_by_side_bad_inputs(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        side_by_side(_images(2), mean=MEAN, std=STD, **kwargs)


def test_side_by_side_rejects_a_single_unbatched_image() -> None:
    with pytest.raises(ValueError, match=r"images\[None\]"):
        side_by_side(_images(1)[0], raw_attention=_maps(1), mean=MEAN, std=STD)


def test_attention_grid_pairs_like_paper_figure_4() -> None:
    fig = attention_grid(_images(5), _maps(5), titles=list("abcde"), ncols=2, mean=MEAN, std=STD, colorbar=False)
    assert len(fig.axes) == 5 * 2
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0::2] == list("abcde")
    assert set(titles[1::2]) == {"Raw attention"}


def test_attention_grid_every_block() -> None:
    blocks = [torch.rand(2, 1, 8, 8), torch.rand(2, 1, 4, 4), _maps(2, 2, 2)]  # as CAModel.attention returns
    fig = attention_grid(_images(2), blocks, titles=["x", "y"], mean=MEAN, std=STD, colorbar=False)
    assert len(fig.axes) == 2 * (1 + 3)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["Input", "Block 1 (8×8)", "Block 2 (4×4)", "Block 3 (2×2)"]
    assert fig.axes[4].get_ylabel() == "y"


def test_attention_grid_blocks_of_one_image_may_be_2d() -> None:
    fig = attention_grid(
        _images(1), [np.random.rand(8, 8), np.random.rand(4, 4)], block_names=["early", "late"], mean=MEAN, std=STD
    )
    assert [ax.get_title() for ax in _image_axes(fig)] == ["Input", "early", "late"]


@pytest.mark.parametrize(
    ("maps", "kwargs", "match"),
    [
        (_maps(3), {}, "one map per image"),
        (_maps(2), {"titles": ["a"]}, "one per image"),
        (_maps(2), {"ncols": 0}, "positive int"),
        ([], {}, "empty list"),
        ([_maps(2), _maps(2)], {"block_names": ["one"]}, "one per block"),
    ],
)
def test_attention_grid_bad_inputs(maps, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        attention_grid(_images(2), maps, mean=MEAN, std=STD, **kwargs)
