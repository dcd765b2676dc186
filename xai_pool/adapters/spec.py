"""StreamSpec and its inference for known model families."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["StreamSpec", "infer_spec", "resolve_module"]

_SPEC_HELP = (
    "pass an explicit spec, e.g. attach_stream(model, spec=xai_pool.StreamSpec("
    "taps=['stem', 'stage1', 'stage2', 'stage3'], pool='avgpool', target_layer='stage4')): "
    "`taps` are the modules whose outputs feed the stream (in forward order, without the last "
    "stage), `pool` is the global-average-pooling module (an nn.Module called once on the last "
    "feature map in forward), `target_layer` the last stage (default CAM layer)"
)


@dataclass(frozen=True)
class StreamSpec:
    """Where the stream attaches in a model (module paths as in ``named_modules()``).

    Args:
        taps: modules whose outputs feed blocks 0..n-2, in forward order.
        pool: the GAP module; the last block reads its input and its output is replaced.
        target_layer: default CAM target layer (defaults to the module before ``pool`` if None).
        family: a label for messages and docs.
    """

    taps: tuple[str, ...]
    pool: str
    target_layer: str | None = None
    family: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "taps", tuple(self.taps))
        if not isinstance(self.pool, str) or not self.pool:
            raise TypeError(f"StreamSpec.pool must be a module path string, got {self.pool!r}")


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule at dotted ``path`` with an error that lists valid names."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:40]
        raise ValueError(f"the model has no submodule {path!r}; some valid names are: {', '.join(names)}") from None


def _torchvision_spec(model: nn.Module) -> StreamSpec | None:
    if not type(model).__module__.startswith("torchvision."):
        return None
    name = type(model).__name__
    if name == "ResNet" and hasattr(model, "layer4"):
        # The paper's placement: after the stem (maxpool output) and after every stage.
        return StreamSpec(("maxpool", "layer1", "layer2", "layer3"), "avgpool", "layer4", "torchvision-resnet")
    if name == "ConvNeXt" and isinstance(getattr(model, "features", None), nn.Sequential):
        # features = [stem, stage1, down, stage2, down, stage3, down, stage4]
        n = len(model.features)
        taps = ("features.0",) + tuple(f"features.{i}" for i in range(1, n - 1, 2))
        return StreamSpec(taps, "avgpool", f"features.{n - 1}", "torchvision-convnext")
    if name == "EfficientNet" and isinstance(getattr(model, "features", None), nn.Sequential):
        # features = [stem, stage1..stageK, 1x1 head conv]; the head conv output is pooled.
        n = len(model.features)
        taps = tuple(f"features.{i}" for i in range(n - 1))
        return StreamSpec(taps, "avgpool", f"features.{n - 1}", "torchvision-efficientnet")
    return None


def _timm_pool_path(model: nn.Module) -> str | None:
    for path in ("global_pool", "head.global_pool"):
        try:
            model.get_submodule(path)
            return path
        except AttributeError:
            continue
    return None


def _timm_spec(model: nn.Module) -> StreamSpec | None:
    info = getattr(model, "feature_info", None)
    if info is None or not hasattr(model, "forward_head"):
        return None
    pool = _timm_pool_path(model)
    if pool is None:
        return None
    if hasattr(info, "module_name"):
        modules = [info.module_name(i) for i in range(len(info))]
    else:  # plain list of dicts
        modules = [d["module"] for d in info]
    modules = [m.replace("_", ".") if not _has(model, m) and _has(model, m.replace("_", ".")) else m for m in modules]
    kind = type(model).__name__
    if kind in ("EfficientNet",) and hasattr(model, "blocks"):
        # Paper placement: stem, every stage, then the 1x1 head conv (read at the pool).
        taps = ("bn1",) + tuple(f"blocks.{i}" for i in range(len(model.blocks)))
        target = "conv_head" if _has(model, "conv_head") else modules[-1]
        target = "bn2" if _has(model, "bn2") else target
        return StreamSpec(taps, pool, target, "timm-efficientnet")
    if kind == "ConvNeXt" and hasattr(model, "stages"):
        taps = ("stem",) + tuple(f"stages.{i}" for i in range(len(model.stages) - 1))
        return StreamSpec(taps, pool, f"stages.{len(model.stages) - 1}", "timm-convnext")
    if kind in ("ResNet",) and _has(model, "maxpool") and _has(model, "layer4"):
        if isinstance(model.maxpool, nn.Identity):  # deep-stem variants without maxpool
            taps = ("act1", "layer1", "layer2", "layer3")
        else:
            taps = ("maxpool", "layer1", "layer2", "layer3")
        return StreamSpec(taps, pool, "layer4", "timm-resnet")
    # Generic timm model: every feature_info stage but the last, whose output is what gets pooled.
    if len(modules) < 1:
        return None
    return StreamSpec(tuple(modules[:-1]), pool, modules[-1], f"timm-{kind.lower()}")


def _has(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False


def infer_spec(model: nn.Module) -> StreamSpec:
    """Find the stream placement for a known model family, or raise with what to pass."""
    declared = getattr(model, "xai_pool_spec", None)
    if isinstance(declared, StreamSpec):  # a model can declare its own placement
        return declared
    for finder in (_torchvision_spec, _timm_spec):
        spec = finder(model)
        if spec is not None:
            return spec
    raise ValueError(f"xai_pool does not know where to attach a stream to {type(model).__name__}; {_SPEC_HELP}")
