"""Targets: every accepted form, per-sample targets in a batch, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

from xai_pool import attach_stream, explain
from xai_pool.saliency import resolve_targets

from .conftest import TINY_SPEC, TinyCNN


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return attach_stream(TinyCNN(), spec=TINY_SPEC)


def _categories(targets) -> list[int]:
    return [t.category for t in targets]


def test_accepted_forms() -> None:
    assert resolve_targets(None, 3) is None
    assert _categories(resolve_targets(2, 3)) == [2, 2, 2]
    assert _categories(resolve_targets(np.int64(1), 2)) == [1, 1]
    assert _categories(resolve_targets([0, 4, 1], 3)) == [0, 4, 1]
    assert _categories(resolve_targets(torch.tensor([3, 1]), 2)) == [3, 1]
    assert _categories(resolve_targets(np.array([2, 0]), 2)) == [2, 0]
    assert _categories(resolve_targets(torch.tensor(4), 2)) == [4, 4]
    soft = ClassifierOutputSoftmaxTarget(3)
    assert resolve_targets(soft, 2) == [soft, soft]
    mixed = resolve_targets([soft, 1], 2)
    assert mixed[0] is soft and mixed[1].category == 1


@pytest.mark.parametrize(
    "targets, batch, error, match",
    [
        ([1, 2, 3], 2, ValueError, "got 3 targets for a batch of 2 images"),
        ([1], 2, ValueError, "one target per image"),
        (7, 2, ValueError, "out of range: the model has 5 classes"),
        ([0, -1], 2, ValueError, "out of range"),
        (["cat", 1], 2, TypeError, "targets\\[0\\]"),
        ("cat", 1, TypeError, "targets must be"),
        (1.5, 1, TypeError, "targets must be"),
        (torch.tensor([0.5, 1.0]), 2, ValueError, "integer class indices"),
        (True, 1, TypeError, "targets must be"),
    ],
)
def test_bad_targets_are_named(targets, batch: int, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        resolve_targets(targets, batch, num_classes=5)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "scorecam"])
@pytest.mark.parametrize("pooling", ["gap", "ca"])
def test_per_sample_targets_equal_running_each_sample_alone(model, method: str, pooling: str) -> None:
    torch.manual_seed(3)
    x = torch.randn(3, 3, 16, 16)
    classes = [4, 0, 2]
    batched = explain(model, x, method, pooling=pooling, targets=classes)
    for i, cls in enumerate(classes):
        alone = explain(model, x[i : i + 1], method, pooling=pooling, targets=[cls])
        np.testing.assert_allclose(batched[i], alone[0], atol=1e-5)
    # And the targets matter: another class gives another map for at least one image.
    other = explain(model, x, method, pooling=pooling, targets=[1, 3, 3])
    assert not np.allclose(batched, other, atol=1e-3)


def test_none_means_the_class_predicted_with_the_chosen_pooling(model) -> None:
    torch.manual_seed(4)
    x = torch.randn(4, 3, 16, 16)
    for pooling in ("gap", "ca"):
        with torch.no_grad(), model.pooling_as(pooling):
            predicted = model(x).argmax(dim=1).tolist()
        np.testing.assert_array_equal(
            explain(model, x, "gradcam", pooling=pooling),
            explain(model, x, "gradcam", pooling=pooling, targets=predicted),
        )


def test_target_objects_work_in_explain(model) -> None:
    x = torch.randn(2, 3, 16, 16)
    by_object = explain(model, x, "gradcam", targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    np.testing.assert_array_equal(by_object, explain(model, x, "gradcam", targets=[1, 2]))
