"""Context managers that put a model back exactly as they found it.

pytorch-grad-cam's ``BaseCAM`` calls ``model.eval()`` and never restores the mode, its
``backward`` accumulates ``.grad`` into every parameter that requires it, ``AblationCAM``
swaps a submodule while it runs, and a CAM built outside a ``with`` block keeps its hooks
until garbage collection. :func:`model_state_guard` undoes all of that in a ``finally``, so a
saliency call has no side effect on the model, even when it raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from ..runtime import eval_mode, preserved_training

__all__ = [
    "count_hooks",
    "preserved_training",
    "preserved_requires_grad",
    "preserved_grads",
    "preserved_structure",
    "preserved_pooling",
    "no_new_hooks",
    "model_state_guard",
]

# The per-module hook dictionaries of torch.nn.Module (keyed by handle id).
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
# Side tables that share the handle ids of the dictionaries above.
_HOOK_SIDE_TABLES = ("_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


def count_hooks(model: nn.Module) -> int:
    """Number of forward, forward-pre, backward and backward-pre hooks on ``model`` and its submodules."""
    return sum(len(getattr(m, name, {})) for m in model.modules() for name in _HOOK_DICTS)


@contextlib.contextmanager
def preserved_requires_grad(model: nn.Module, *, freeze: bool = False) -> Iterator[None]:
    """Restore every parameter's ``requires_grad`` on exit; ``freeze=True`` turns them all off inside.

    Freezing inside a saliency call keeps ``backward`` from accumulating into parameters
    (gradients then reach the activations through the input, see :func:`xai_pool.explain`).
    """
    with _requires_grad(list(model.parameters()), freeze):
        yield


@contextlib.contextmanager
def preserved_grads(model: nn.Module) -> Iterator[None]:
    """Put each parameter's ``.grad`` back on exit (BaseCAM calls ``model.zero_grad()``)."""
    with _grads(list(model.parameters())):
        yield


@contextlib.contextmanager
def preserved_structure(model: nn.Module) -> Iterator[None]:
    """Restore every module's children on exit (``AblationCAM`` swaps its target layer in place)."""
    with _structure(list(model.modules())):
        yield


@contextlib.contextmanager
def preserved_pooling(model: nn.Module) -> Iterator[None]:
    """Restore ``model.pooling`` on exit (a no-op for models without a pooling switch)."""
    has_pooling = hasattr(model, "pooling") and hasattr(model, "pooling_as")
    previous = model.pooling if has_pooling else None
    try:
        yield
    finally:
        if has_pooling:
            model.pooling = previous


@contextlib.contextmanager
def no_new_hooks(model: nn.Module) -> Iterator[None]:
    """Remove on exit every module hook registered inside the block.

    A safety net: the methods we run release their own hooks, but a third-party CAM used
    outside its ``with`` block (or one that raised half-way through its constructor) would
    otherwise leave them until garbage collection.
    """
    with _hooks(list(model.modules())):
        yield


# The workers take module/parameter lists so that model_state_guard walks the model once
# (a module-tree walk per guard was most of explain()'s overhead on small models).


@contextlib.contextmanager
def _requires_grad(params: list[nn.Parameter], freeze: bool) -> Iterator[None]:
    saved = [(p, p.requires_grad) for p in params]
    try:
        if freeze:
            for p, flag in saved:
                if flag:
                    p.requires_grad_(False)
        yield
    finally:
        for p, flag in saved:
            if p.requires_grad != flag:
                p.requires_grad_(flag)


@contextlib.contextmanager
def _grads(params: list[nn.Parameter]) -> Iterator[None]:
    saved = [(p, p.grad) for p in params]
    try:
        yield
    finally:
        for p, grad in saved:
            if p.grad is not grad:
                p.grad = grad


@contextlib.contextmanager
def _structure(modules: list[nn.Module]) -> Iterator[None]:
    saved = [(module, dict(module._modules)) for module in modules]
    try:
        yield
    finally:
        for module, children in saved:
            if module._modules != children:
                module._modules.clear()
                module._modules.update(children)


@contextlib.contextmanager
def _hooks(modules: list[nn.Module]) -> Iterator[None]:
    saved = [(module, [(name, set(getattr(module, name, {}))) for name in _HOOK_DICTS]) for module in modules]
    try:
        yield
    finally:
        for module, before in saved:
            for name, keys in before:
                table = getattr(module, name, None)
                if not table or len(table) == len(keys):
                    continue  # hooks are only ever added here; an unchanged count means nothing new
                for key in [k for k in table if k not in keys]:
                    del table[key]
                    for side in _HOOK_SIDE_TABLES:
                        getattr(module, side, {}).pop(key, None)


@contextlib.contextmanager
def model_state_guard(model: nn.Module, *, pooling: str | None = None, freeze: bool = True) -> Iterator[nn.Module]:
    """Run a saliency computation on ``model`` without side effects.

    Inside the block the model is in eval mode, its parameters are frozen (``freeze=True``)
    and, for a :class:`~xai_pool.CAModel`, its pooling is ``pooling``. On exit (also after an
    exception) the pooling mode, every submodule's train/eval flag, every parameter's
    ``requires_grad`` and ``.grad``, the module tree and the set of hooks are as before.

    Args:
        model: the model to protect.
        pooling: ``"gap"`` or ``"ca"`` to switch a CAModel's pooling inside the block.
        freeze: set ``requires_grad=False`` on every parameter inside the block.

    Yields:
        ``model``.
    """
    modules = list(model.modules())
    params = list(model.parameters())
    with contextlib.ExitStack() as stack:
        # Exit runs in reverse: hooks and the module tree are repaired last.
        stack.enter_context(_hooks(modules))
        stack.enter_context(_structure(modules))
        stack.enter_context(_grads(params))
        stack.enter_context(_requires_grad(params, freeze))
        stack.enter_context(eval_mode(modules))  # not model.eval(): an overridden train() may do more
        stack.enter_context(preserved_pooling(model))
        if pooling is not None:
            model.pooling = pooling
        yield model
