"""Offline sample photos (scikit-image, matplotlib) preprocessed for ImageNet models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xai_pool.data import PHOTO_NAMES, load_photo, sample_photos


def test_every_photo_is_its_library_sample_untouched():
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    for name in PHOTO_NAMES:
        if name == "grace_hopper":
            with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
                source = np.asarray(Image.open(handle))
        else:
            source = getattr(skimage.data, name)()
            source = source[0] if name == "stereo_motorcycle" else source  # (left, right, disparity)
        image = load_photo(name)
        assert image.dtype == np.uint8 and source.dtype == np.uint8, name
        np.testing.assert_array_equal(image, source[..., :3], err_msg=name)  # already RGB: nothing converted


def test_batch_is_normalised_crop_of_the_rgb():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    photos = sample_photos(["chelsea", "grace_hopper"], size=96, mean=mean, std=std)
    assert photos.names == ("chelsea", "grace_hopper") and len(photos) == 2
    assert photos.images.shape == (2, 3, 96, 96) and photos.images.dtype == torch.float32
    assert photos.rgb.shape == (2, 96, 96, 3) and photos.rgb.min() >= 0.0 and photos.rgb.max() <= 1.0
    rebuilt = (torch.from_numpy(photos.rgb).permute(0, 3, 1, 2) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
        std
    ).view(3, 1, 1)
    torch.testing.assert_close(photos.images, rebuilt)


def test_centre_crop_keeps_the_middle():
    # chelsea is 300x451: resizing the short side to 300 keeps it; torchvision's centre crop starts
    # at round(151 / 2) = 76.
    photos = sample_photos(["chelsea"], size=300, resize=300, mean=(0, 0, 0), std=(1, 1, 1))
    raw = load_photo("chelsea").astype(np.float32) / 255.0
    offset = int(round((raw.shape[1] - 300) / 2))
    assert offset == 76
    np.testing.assert_allclose(photos.rgb[0], raw[:, offset : offset + 300], atol=1 / 255)


def test_default_is_the_imagenet_like_photos():
    assert sample_photos(size=32).names == ("chelsea", "coffee", "astronaut", "rocket", "grace_hopper")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"names": ["lena"]}, "unknown photo 'lena'"),
        ({"names": []}, "names is empty"),
        ({"size": 4}, "size must be"),
        ({"size": 64, "resize": 32}, "resize must be"),
        ({"std": (1, 0, 1)}, "std > 0"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_photos(**kwargs)
