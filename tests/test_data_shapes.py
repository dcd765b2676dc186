"""ShapesScenes: determinism per index, masks that match the drawn target, types, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from xai_pool.data import SHAPE_CLASSES, SHAPES_MEAN, SHAPES_STD, ShapesScenes, normalization


def test_an_item_is_the_rendered_scene_normalised() -> None:
    data = ShapesScenes("test", n=20, size=64)
    image, label, mask = data[3]
    scene = data.render(3)
    rgb = torch.from_numpy(scene.image).permute(2, 0, 1).double() / 255
    mean, std = torch.tensor(SHAPES_MEAN).view(3, 1, 1), torch.tensor(SHAPES_STD).view(3, 1, 1)
    assert image.dtype == torch.float32
    torch.testing.assert_close(image.double(), (rgb - mean) / std, rtol=0, atol=1e-6)
    assert label == scene.label == 3 % len(SHAPE_CLASSES)  # classes cycle with the index
    assert mask.dtype == torch.bool and torch.equal(mask, torch.from_numpy(scene.mask))
    assert len(data) == 20 and data.class_names == SHAPE_CLASSES and len(SHAPE_CLASSES) == 10
    assert normalization() == (SHAPES_MEAN, SHAPES_STD) == (data.mean, data.std)


def test_scene_depends_only_on_split_seed_and_index() -> None:
    a, b = ShapesScenes("train", n=50), ShapesScenes("train", n=7)
    for i in (0, 5, 6):
        xa, ya, ma = a[i]
        xb, yb, mb = b[i]
        assert torch.equal(xa, xb) and ya == yb and torch.equal(ma, mb)
    # Access order does not matter either.
    assert torch.equal(a[6][0], ShapesScenes("train", n=50)[6][0])
    assert torch.equal(a[-1][0], a[49][0])


def test_different_indices_splits_and_seeds_differ() -> None:
    train = ShapesScenes("train", n=20)
    images = [train[i][0] for i in range(20)]
    for i in range(19):
        assert not torch.equal(images[i], images[i + 1])
    assert not torch.equal(train[0][0], ShapesScenes("test", n=20)[0][0])
    assert not torch.equal(train[0][0], ShapesScenes("train", n=20, seed=1)[0][0])


def test_labels_are_in_range_and_every_class_appears() -> None:
    _, labels, _ = ShapesScenes("test", n=30).tensors()
    assert labels.min() >= 0 and labels.max() < 10
    assert torch.bincount(labels, minlength=10).tolist() == [3] * 10


@pytest.mark.parametrize("size", [64, 48, 96])
def test_mask_is_exactly_what_the_target_changed(size: int) -> None:
    data = ShapesScenes("test", n=40, size=size)
    for i in range(40):
        scene = data.render(i)
        without = data.render(i, draw_target=False)
        changed = np.any(scene.image != without.image, axis=-1)
        mask = scene.mask
        assert mask.any()
        # Everything the target changed lies in its mask (1 px of slack for anti-aliasing) ...
        assert not (changed & ~ndimage.binary_dilation(mask)).any()
        # ... and the target contrasts with the background, so (nearly) every mask pixel changed.
        assert changed[mask].mean() > 0.95
        # The target is fully inside the image: nothing on the border.
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        assert np.array_equal(mask, scene.coverage > 0)
        assert np.array_equal(without.mask, mask)  # the mask does not depend on drawing


def test_the_same_scene_without_the_target_only_lacks_the_target() -> None:
    data = ShapesScenes("train", n=10)
    scene, without = data.render(2), data.render(2, draw_target=False)
    outside = ~ndimage.binary_dilation(scene.mask)
    assert np.array_equal(scene.image[outside], without.image[outside])


def test_targets_cover_a_plausible_share_of_the_image() -> None:
    _, _, masks = ShapesScenes("test", n=100).tensors()
    share = masks.float().mean(dim=(1, 2))
    assert share.min() > 0.015 and share.max() < 0.15 and 0.03 < share.mean() < 0.09


def test_tensors_equal_the_stacked_items() -> None:
    data = ShapesScenes("test", n=12, size=48)
    images, labels, masks = data.tensors()
    assert images.shape == (12, 3, 48, 48) and labels.dtype == torch.int64 and masks.dtype == torch.bool
    for i in range(12):
        image, label, mask = data[i]
        assert torch.equal(images[i], image) and labels[i] == label and torch.equal(masks[i], mask)


def test_denormalize_gives_back_the_8_bit_image() -> None:
    data = ShapesScenes("test", n=3)
    image, _, _ = data[1]
    raw = torch.from_numpy(data.render(1).image).permute(2, 0, 1).float() / 255
    assert torch.allclose(ShapesScenes.denormalize(image), raw, atol=1e-5)
    assert torch.allclose(ShapesScenes.normalize(raw), image, atol=1e-5)


def test_distractor_count_is_configurable() -> None:
    plain = ShapesScenes("test", n=5, distractors=(0, 0))
    busy = ShapesScenes("test", n=5, distractors=(3, 3))
    assert not torch.equal(plain[0][0], busy[0][0])
    assert plain[0][1] == busy[0][1]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"split": "val"}, ValueError, "split must be 'train' or 'test'"),
        ({"n": 0}, ValueError, "n must be a positive"),
        ({"n": 2.5}, TypeError, "n must be an int"),
        ({"size": 16}, ValueError, "size must be at least 32"),
        ({"seed": -1}, ValueError, "seed must be a non-negative"),
        ({"distractors": (3, 1)}, ValueError, "distractors must be"),
        ({"distractors": 2}, ValueError, "distractors must be"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ShapesScenes(**kwargs)


def test_bad_indices_and_inputs_raise() -> None:
    data = ShapesScenes("test", n=4)
    with pytest.raises(IndexError, match="out of range"):
        data[4]
    with pytest.raises(TypeError, match="index must be an int"):
        data["0"]  # type: ignore[index]
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\)"):
        ShapesScenes.denormalize(torch.zeros(4, 4))
