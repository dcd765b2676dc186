"""xai_pool.viz.overlay: RGB-correct heat maps from any image normalisation."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from xai_pool.viz import overlay
from xai_pool.viz._style import COLORMAP_JET

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# xai_pool.viz builds matplotlib Figures outside pyplot: none may be left in pyplot's registry
pytestmark = pytest.mark.usefixtures("no_pyplot_figures_left")


def _image(h: int = 12, w: int = 16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((h, w, 3)).astype(np.float32)


def _ramp(h: int = 12, w: int = 16) -> np.ndarray:
    return np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))


def test_import_is_light() -> None:
    code = "import sys, xai_pool.viz; print([m for m in ('torch', 'matplotlib', 'cv2') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_default_colormap_is_jet() -> None:
    assert COLORMAP_JET == cv2.COLORMAP_JET


@pytest.mark.parametrize(("image_weight", "colormap"), [(0.5, cv2.COLORMAP_JET), (0.2, cv2.COLORMAP_VIRIDIS)])
def test_equals_pytorch_grad_cam_show_cam_on_image_in_rgb(image_weight: float, colormap: int) -> None:
    from pytorch_grad_cam.utils.image import show_cam_on_image

    saliency = _ramp() ** 2  # at image size, min 0 and max 1: nothing to rescale or resize
    expected = show_cam_on_image(_image(), saliency, use_rgb=True, colormap=colormap, image_weight=image_weight)
    out = overlay(_image(), saliency, image_weight=image_weight, colormap=colormap)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_jet_hot_end_is_red_and_cold_end_blue_in_rgb() -> None:
    black = np.zeros((12, 16, 3), dtype=np.float32)
    out = overlay(black, _ramp()).astype(int)
    hot, cold = out[:, -1], out[:, 0]  # saliency 1 at the right edge, 0 at the left
    assert (hot[:, 0] > hot[:, 2] + 50).all(), "high saliency must be red in RGB (BGR bug?)"
    assert (cold[:, 2] > cold[:, 0] + 50).all(), "low saliency must be blue in RGB"


@pytest.mark.parametrize(
    "form",
    ["float_hwc", "float_chw", "uint8_hwc", "tensor_chw", "tensor_normalised", "array_normalised"],
)
def test_every_image_form_gives_the_same_overlay(form: str) -> None:
    rgb = np.round(_image() * 255) / 255  # exactly representable in uint8
    expected = overlay(rgb.astype(np.float32), _ramp())
    normalised = (rgb - np.array(MEAN)) / np.array(STD)
    image, kwargs = {
        "float_hwc": (rgb, {}),
        "float_chw": (rgb.transpose(2, 0, 1), {}),
        "uint8_hwc": (np.round(rgb * 255).astype(np.uint8), {}),
        "tensor_chw": (torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float(), {}),
        "tensor_normalised": (
            torch.from_numpy(normalised.transpose(2, 0, 1).copy()).float(),
            {"mean": MEAN, "std": STD},
        ),
        "array_normalised": (normalised.astype(np.float32), {"mean": MEAN, "std": STD}),
    }[form]
    out = overlay(image, _ramp(), **kwargs)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_saliency_any_resolution_and_range() -> None:
    image = _image(32, 24)
    low_res = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = overlay(image, low_res)
    assert out.shape == (32, 24, 3)
    assert np.array_equal(out, overlay(image, low_res * 1000 - 7))
    assert np.array_equal(out, overlay(image, torch.from_numpy(low_res)[None]))


def test_constant_saliency_is_treated_as_zeros() -> None:
    image = _image()
    assert np.array_equal(overlay(image, np.full((3, 3), 5.0)), overlay(image, np.zeros((3, 3))))


def test_grey_image_is_repeated_to_rgb() -> None:
    grey = _image()[..., 0]
    out = overlay(grey, _ramp())
    assert np.array_equal(out, overlay(np.repeat(grey[..., None], 3, axis=-1), _ramp()))


def test_inputs_are_not_modified() -> None:
    image, saliency = torch.rand(3, 8, 8), np.random.default_rng(1).random((4, 4))
    image_copy, saliency_copy = image.clone(), saliency.copy()
    overlay(image, saliency)
    assert torch.equal(image, image_copy) and np.array_equal(saliency, saliency_copy)


def test_black_image_full_image_weight_gives_black_not_nan() -> None:
    out = overlay(np.zeros((4, 4, 3), dtype=np.float32), np.zeros((4, 4)), image_weight=1.0)
    assert (out == 0).all()


@pytest.mark.parametrize(
    ("image", "saliency", "kwargs", "error", "match"),
    [
        (np.zeros((8, 8, 4)), np.zeros((8, 8)), {}, ValueError, "alpha"),
        (np.zeros((2, 3, 8, 8)), np.zeros((8, 8)), {}, ValueError, r"images\[i\]"),
        (np.zeros((8, 8, 3)), np.zeros((2, 8, 8)), {}, ValueError, r"one map of shape \(h, w\)"),
        (np.full((8, 8, 3), -1.5), np.zeros((8, 8)), {}, ValueError, "mean= and std="),
        (np.full((8, 8, 3), 200.0), np.zeros((8, 8)), {}, ValueError, "uint8"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8)), {"mean": MEAN}, ValueError, "both mean and std"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), {"mean": MEAN, "std": STD}, ValueError, "uint8"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8)), {"mean": (0.5, 0.5), "std": STD}, ValueError, "1 or 3 values"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8)), {"image_weight": 1.5}, ValueError, "image_weight"),
        (np.zeros((8, 8, 3)), np.full((8, 8), np.nan), {}, ValueError, "NaN"),
        ("photo.png", np.zeros((8, 8)), {}, TypeError, "numbers"),
        (np.zeros((8, 8, 3)), np.zeros((8, 8)), {"colormap": "jet"}, TypeError, "COLORMAP_JET"),
    ],
)
def test_bad_inputs_raise_clear_errors(image, saliency, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        overlay(image, saliency, **kwargs)
