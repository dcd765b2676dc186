"""Stream checkpoints: round trip, refusal of mismatches, safe loading, atomic writes."""

from __future__ import annotations

import os

import pytest
import torch
import torchvision

from xai_pool import attach_stream, load_stream, save_stream
from xai_pool.checkpoint import atomic_torch_save


def _resnet(seed: int = 0, **options):
    torch.manual_seed(seed)
    return attach_stream(torchvision.models.resnet18(num_classes=10), **options)


def test_round_trip_restores_identical_outputs(tmp_path) -> None:
    model = _resnet()
    path = save_stream(model, tmp_path / "stream.pt")
    other = attach_stream(model.backbone, copy=True)  # same backbone weights, fresh stream
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(other(x), model(x))
        load_stream(other, path)
        assert torch.equal(other(x), model(x))


def test_refuses_another_backbone(tmp_path) -> None:
    path = save_stream(_resnet(seed=0), tmp_path / "s.pt")
    with pytest.raises(ValueError, match="different weights"):
        load_stream(_resnet(seed=1), path)
    other_arch = attach_stream(torchvision.models.resnet34(num_classes=10))
    with pytest.raises(ValueError, match="another stream configuration|another backbone"):
        load_stream(other_arch, path)


def test_refuses_another_configuration(tmp_path) -> None:
    model = _resnet()
    path = save_stream(model, tmp_path / "s.pt")
    with pytest.raises(ValueError, match="start_stage"):
        load_stream(attach_stream(model.backbone, copy=True, start_stage=2), path)


def test_truncated_and_foreign_files_fail_clearly(tmp_path) -> None:
    model = _resnet()
    path = save_stream(model, tmp_path / "s.pt")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        load_stream(model, truncated)
    foreign = tmp_path / "f.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not an xai_pool stream checkpoint"):
        load_stream(model, foreign)
    with pytest.raises(FileNotFoundError):
        load_stream(model, tmp_path / "missing.pt")


def test_pickled_code_is_never_executed(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "xai_pool.stream", "x": Evil()}, path)
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_stream(_resnet(), path)
    assert not (tmp_path / "pwned").exists()


def test_atomic_save_keeps_the_previous_file_when_interrupted(tmp_path, monkeypatch) -> None:
    model = _resnet()
    path = save_stream(model, tmp_path / "s.pt")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"a": 1}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temporary file left behind


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os

    from xai_pool.checkpoint import atomic_torch_save

    old = os.umask(0o022)
    try:
        path = atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "state.pt")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644  # not mkstemp's 0600
