"""Where a model runs and which mode it is in: the one home of xai_pool's device and train/eval helpers.

- :func:`resolve_device` turns a device name (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
  ``None``) into a :class:`torch.device`, refusing names torch does not know and CUDA on a
  machine without it. Every command, trainer and end-to-end run resolves its device here.
- :func:`model_device` is the device a model's weights live on.
- :func:`preserved_training` restores every submodule's ``training`` flag on exit, and
  :func:`eval_mode` puts every submodule in eval mode for the duration of a block. Both write
  the flags directly instead of calling ``.train()`` / ``.eval()``: a model that overrides
  ``train()`` (a :class:`~xai_pool.CAModel` keeps its frozen backbone in eval) gets back
  exactly the per-module state it had, never the state its ``train(mode)`` would set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

__all__ = ["resolve_device", "model_device", "save_training_flags", "preserved_training", "eval_mode"]

_DEVICE_NAMES = "'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(
    device: str | torch.device | None = None, local_rank: int = 0, *, name: str = "device"
) -> torch.device:
    """The device to run on.

    ``None`` and ``"auto"`` mean CUDA when it is available, else the CPU. A CUDA device
    without an index (``"auto"``, ``"cuda"``) is ``cuda:LOCAL_RANK`` (modulo the number of
    GPUs), so that each ``torchrun`` process of a machine gets its own GPU.

    Args:
        device: ``None``, ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a :class:`torch.device`.
        local_rank: the process's rank on this machine (``LOCAL_RANK`` under torchrun).
        name: the argument's name in messages (a command passes its flag's name).

    Returns:
        The resolved device.

    Raises:
        ValueError: ``device`` is not a device name, or names CUDA on a machine without CUDA.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} {device!r} is not a device name; use {_DEVICE_NAMES}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} is {device!r} but CUDA is not available on this machine; use 'cpu' (or 'auto': CUDA "
                "when available)"
            )
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank % torch.cuda.device_count())
    return resolved


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter or buffer.

    Args:
        model: any module.
        fallback: returned for a module without parameters or buffers.

    Returns:
        Where the model's weights live.
    """
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return fallback


def _module_list(model: nn.Module | Iterable[nn.Module]) -> list[nn.Module]:
    return list(model.modules()) if isinstance(model, nn.Module) else list(model)


def save_training_flags(model: nn.Module | Iterable[nn.Module]) -> Callable[[], None]:
    """Record the ``training`` flag of every submodule; the returned function writes them back.

    For objects that restore the modes in their own ``__exit__`` (a context manager would run
    its restore whenever it is garbage-collected). Elsewhere use :func:`preserved_training`.

    Args:
        model: a module (it and all its submodules), or the modules themselves.

    Returns:
        A function of no arguments that restores the recorded flags (directly, not through
        ``.train()``); calls after the first do nothing.
    """
    saved = [(module, module.training) for module in _module_list(model)]

    def restore() -> None:
        for module, flag in saved:
            if module.training != flag:
                module.training = flag
        saved.clear()  # once: a second call must not undo later changes

    return restore


@contextlib.contextmanager
def preserved_training(model: nn.Module | Iterable[nn.Module]) -> Iterator[None]:
    """Restore the ``training`` flag of every submodule on exit, also after an exception.

    The flags are written back directly (not through ``.train()``), so a model whose
    ``train()`` is overridden (a :class:`~xai_pool.CAModel` keeps its backbone in eval) gets
    exactly its previous per-module state back.

    Args:
        model: a module (it and all its submodules are restored), or the modules themselves
            (callers that already walked the module tree pass the list, so it is walked once).

    Yields:
        None.
    """
    restore = save_training_flags(model)
    try:
        yield
    finally:
        restore()


@contextlib.contextmanager
def eval_mode(model: nn.Module | Iterable[nn.Module]) -> Iterator[None]:
    """Every submodule in eval mode inside the block; each one's own flag restored on exit.

    Flags are set directly, not through ``model.eval()``: an overridden ``train()`` may do more
    than switch modes (or leave some modules training), and dropout or batch-norm updates in a
    module it skipped would change the results.

    Args:
        model: a module, or the list of modules (as for :func:`preserved_training`).

    Yields:
        None.
    """
    modules = _module_list(model)
    with preserved_training(modules):
        for module in modules:
            if module.training:
                module.training = False
        yield
