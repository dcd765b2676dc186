"""Importing xai_pool is light; the public names resolve lazily."""

from __future__ import annotations

import subprocess
import sys

import xai_pool


def test_import_does_not_load_torch_or_matplotlib() -> None:
    code = "import sys, xai_pool; print('torch' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_public_api_names() -> None:
    for name in ("attach_stream", "CAModel", "StreamSpec", "save_stream", "load_stream"):
        assert callable(getattr(xai_pool, name))


def test_submodules_are_reachable_as_attributes():
    import xai_pool

    assert callable(xai_pool.classifiers.build_classifier)
    assert callable(xai_pool.transfer.run_transfer)
