"""Generic discovery: find a model's global average pooling and its stages from probe passes.

Works on any ``nn.Module`` whose forward is built from submodules, with no name or family
knowledge. From the :class:`~xai_pool.adapters.probe.Recording` of one probe forward pass (two,
at two input sizes, when the model accepts them) it finds:

1. **The pooling.** A module whose input is a feature map and whose output is that map
   averaged over its spatial positions, after which no module produces a map (the global
   pooling, not an SE block's); or, for pooling written as a function (``F.adaptive_avg_pool2d``,
   ``x.mean((2, 3))``, ``tokens.mean(1)``), the first module after the last feature map whose
   input is that map's spatial mean (the classifier's first layer). Values are compared, so
   what is found is exactly what the model averages.
2. **The stages.** The modules on the main path are walked in call order (``nn.Sequential``
   containers of blocks are opened), consecutive modules with the same output shape form a
   stage, and a tap is placed at the end of every stage before the pooled map: after the stem
   and after every point where the resolution or the width changes (the paper's placement).
3. **Refusals with reasons.** A model that pools by its class token, flattens a 7x7 map or
   takes a global maximum is refused with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .layout import TapLayout
from .probe import Call, Recording, layout_from_one_shape, layout_from_shapes, select_output

__all__ = [
    "Discovery",
    "LayoutOracle",
    "discover",
    "spatial_mean",
    "canonical_producer",
    "close_enough",
    "NotPoolable",
    "output_index",
]


class NotPoolable(ValueError):
    """The model has no global average pooling that a CA-Stream could replace (the reason says why)."""


def spatial_mean(tensor: Tensor, layout: TapLayout) -> Tensor:
    """The (B, C) average over the spatial positions of ``tensor`` read in ``layout`` (what GAP computes)."""
    if layout.kind == "nchw":
        return tensor.float().mean(dim=(2, 3))
    if layout.kind == "nhwc":
        return tensor.float().mean(dim=(1, 2))
    return tensor[:, layout.prefix_tokens :].float().mean(dim=1)


def close_enough(a: Tensor, b: Tensor) -> bool:
    """Equal up to float rounding relative to ``b``'s scale (GAP found by comparing values), NaN never."""
    a = a.detach().float().reshape(a.shape[0], -1)
    b = b.detach().float().reshape(b.shape[0], -1)
    if a.shape != b.shape or not torch.isfinite(a).all():
        return False
    scale = max(float(b.abs().max()), 1e-6)
    return bool((a - b).abs().max() <= 1e-4 * scale + 1e-6)


class LayoutOracle:
    """Layouts of the tensors seen in a probe, measured at two input sizes when possible.

    Args:
        first: the recording at the first probe size.
        second: the recording at a second size, or None when the model accepts one size only.
        hints: per-tensor metadata for single-size probes (channels/prefix/reduction/kind).
    """

    def __init__(self, first: Recording, second: Recording | None, hints: dict | None = None) -> None:
        self.first = first
        self.second = second
        self._second_calls = second.by_key() if second is not None else {}
        self.hints = dict(hints or {})
        self._cache: dict[tuple[str, int, str], TapLayout | None] = {}

    def _other(self, call: Call, what: str) -> Tensor | None:
        other = self._second_calls.get((call.name, call.occurrence))
        if other is None:
            return None
        return _unit_tensor(other.output) if what == "output" else _as_map_tensor(other.input)

    def layout(self, call: Call, what: str = "output") -> TapLayout | None:
        """The layout of ``call``'s output (or input), or None if it holds no spatial grid."""
        key = (call.name, call.occurrence, what)
        if key not in self._cache:
            tensor = _unit_tensor(call.output) if what == "output" else _as_map_tensor(call.input)
            layout = None
            if tensor is not None:
                if self.second is not None:
                    other = self._other(call, what)
                    if other is not None:
                        layout = layout_from_shapes(
                            tensor.shape, self.first.image_size, other.shape, self.second.image_size
                        )
                else:
                    layout = layout_from_one_shape(tensor.shape, self.first.image_size, **self.hints)
            self._cache[key] = layout
        return self._cache[key]


def _as_map_tensor(value: object) -> Tensor | None:
    if isinstance(value, Tensor) and value.ndim in (3, 4) and value.is_floating_point():
        return value
    return None


def output_index(value: object) -> int | None:
    """0 when a module returns a tuple/list whose first element is its feature map (DPN, SelecSLS, MViT)."""
    if isinstance(value, (tuple, list)) and value and _as_map_tensor(value[0]) is not None:
        return 0
    return None


def _unit_tensor(value: object) -> Tensor | None:
    index = output_index(value)
    return _as_map_tensor(value if index is None else value[index])  # type: ignore[index]


def _has_grid(layout: TapLayout | None, tensor: Tensor) -> bool:
    if layout is None:
        return False
    if layout.kind == "nchw":
        return tensor.shape[2] * tensor.shape[3] > 1
    if layout.kind == "nhwc":
        return tensor.shape[1] * tensor.shape[2] > 1
    return tensor.shape[1] - layout.prefix_tokens > 1


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found: the pooling and the stage taps (module paths and layouts).

    ``pool_kind`` is ``"module"`` (``pool_path`` is the GAP module: its input is the pooled map,
    its output is replaced) or ``"head_input"`` (``pool_path`` is the classifier's first module:
    its input, the pooled vector, is replaced; the pooled map is the output of ``pooled_path``).
    """

    pool_kind: str
    pool_path: str
    pooled_path: str
    pooled_layout: TapLayout
    taps: tuple[tuple[str, TapLayout, bool, int | None], ...]  # (path, layout, clone, output index)
    alternatives: dict = field(default_factory=dict)  # tap path -> earlier modules of its stage, same shape


def canonical_producer(recording: Recording, tensor: Tensor, after: int = -1) -> Call | None:
    """The outermost module call that created ``tensor``, started after ``after`` and runs once.

    Pass-through modules (Identity, in-place activations, eval-mode dropout: output is input)
    do not create the tensor and are skipped, so a stage is named by its container
    (``layer4``) rather than by its last in-place ReLU or a trailing ``norm_pre`` Identity.
    ``after`` (the end of the previous stage) keeps a container of several stages
    (``features``, ``blocks``) from naming its last one.
    """
    candidates = [
        c
        for c in recording.calls
        if c.name
        and c.output is tensor
        and c.pre > after
        and not c.passthrough
        and recording.counts.get(c.name, 0) == 1
    ]
    return max(candidates, key=lambda c: c.post) if candidates else None


def view_producer(recording: Recording, tensor: Tensor, *, partial: bool = False) -> Call | None:
    """The last module whose output ``tensor`` is a view of (``x.permute(0, 3, 1, 2)`` after an NHWC norm).

    ``partial=True`` also accepts views of part of the output (``tokens[:, 1:]``).
    """
    if not isinstance(tensor, Tensor):
        return None

    def is_view(output: object) -> bool:
        if not isinstance(output, Tensor) or output is tensor:
            return False
        if partial:
            return output.untyped_storage().data_ptr() == tensor.untyped_storage().data_ptr()
        return output.numel() == tensor.numel() and output.data_ptr() == tensor.data_ptr()

    candidates = [c for c in recording.calls if c.name and is_view(c.output) and recording.counts.get(c.name, 0) == 1]
    return max(candidates, key=lambda c: c.post) if candidates else None


def _is_block_container(module: nn.Module) -> bool:
    """An ``nn.Sequential`` of blocks (not of plain layers such as conv-norm-act) is opened into its blocks."""
    return isinstance(module, nn.Sequential) and any(not _is_layer(child) for child in module)


_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


def _is_stem_piece(module: nn.Module) -> bool:
    """What follows the stem's first layer inside the stem: norms, activations, pooling (not a second conv)."""
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
        return True
    return next(module.children(), None) is None and not isinstance(module, _WEIGHT_LAYERS)


def _is_layer(module: nn.Module) -> bool:
    """A single layer: no children, a Sequential of plain layers (conv-norm-act), or a norm with an activation."""
    children = list(module.children())
    if not children:
        return True
    if isinstance(module, nn.Sequential):
        return all(next(child.children(), None) is None for child in children)
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def _call_tree(recording: Recording) -> dict[int, list[Call]]:
    """Children of every call (by call nesting, so ModuleList members belong to their caller)."""
    children: dict[int, list[Call]] = {}
    stack: list[Call] = []
    for call in sorted(recording.calls, key=lambda c: c.pre):
        while stack and stack[-1].post < call.pre:
            stack.pop()
        parent = stack[-1] if stack else None
        children.setdefault(id(parent) if parent is not None else 0, []).append(call)
        stack.append(call)
    return children


def _units(recording: Recording, until: int) -> list[Call]:
    """The main-path module calls in call order, up to the call that ends at ``until``.

    Sequential containers of blocks are opened into their blocks; a container that is still
    running at ``until`` (it holds the pooled map's producer) is opened whatever its type, and
    so is a lone container holding the whole body (``self.body = Body()``).
    """
    tree = _call_tree(recording)
    top = tree.get(0, [])
    root = next((c for c in top if c.name == ""), None)

    def expand(calls: list[Call]) -> list[Call]:
        result: list[Call] = []
        for call in calls:
            if call.pre > until:
                break
            if call.post > until:
                result.extend(expand(tree.get(id(call), [])))
                break
            if _is_block_container(call.module):
                result.extend(expand(tree.get(id(call), [])))
            else:
                result.append(call)
        return result

    units = expand(tree.get(id(root), []) if root is not None else top)
    while True:
        maps = [u for u in units if _unit_tensor(u.output) is not None]
        children = tree.get(id(maps[0]), []) if len(maps) == 1 else []
        if len(children) < 2:
            return units
        index = units.index(maps[0])
        units = units[:index] + expand(children) + units[index + 1 :]


def _map_calls(recording: Recording, oracle: LayoutOracle) -> list[tuple[Call, TapLayout]]:
    """Module calls whose output is a feature map with more than one position, with its layout."""
    found = []
    for call in recording.calls:
        tensor = _as_map_tensor(call.output)
        if call.name and tensor is not None:
            layout = oracle.layout(call)
            if layout is not None and _has_grid(layout, tensor):
                found.append((call, layout))
    return found


def _find_module_pool(recording: Recording, oracle: LayoutOracle) -> tuple[Call, TapLayout] | None:
    """The last module that averages a map over its positions, with no map computed after it."""
    last_map_start = max((c.pre for c, _ in _map_calls(recording, oracle)), default=-1)
    best: tuple[Call, TapLayout] | None = None
    for call in recording.calls:
        source = _as_map_tensor(call.input)
        if not call.name or source is None or not isinstance(call.output, Tensor) or last_map_start > call.post:
            continue  # a map computed after it: an SE block's squeeze, not the global pooling
        layout = oracle.layout(call, "input")
        if layout is None or not _has_grid(layout, source):
            continue
        if call.output.numel() != source.shape[0] * layout.channels:
            continue
        if close_enough(call.output, spatial_mean(source, layout)) and (best is None or call.post > best[0].post):
            best = (call, layout)
    return best


def _last_map(recording: Recording, oracle: LayoutOracle) -> tuple[Call, TapLayout] | None:
    maps = _map_calls(recording, oracle)
    return max(maps, key=lambda item: item[0].post) if maps else None


def _vector_input(call: Call) -> Tensor | None:
    value = call.input
    if (
        isinstance(value, Tensor)
        and value.is_floating_point()
        and (value.ndim == 2 or (value.ndim == 4 and value.shape[2:] == (1, 1)))
    ):
        return value
    return None


def _find_head_input(
    recording: Recording, last: Call, layout: TapLayout
) -> tuple[Call | None, Call | None, str | None]:
    """(head call, pooled-map call, refusal reason) for pooling written as a function."""
    feature = _as_map_tensor(last.output)
    head = next(
        (c for c in sorted(recording.calls, key=lambda c: c.pre) if c.pre > last.post and _vector_input(c) is not None),
        None,
    )
    if head is None:
        return None, None, "no layer follows its last feature map with a pooled vector (is there a classifier?)"
    vector = _vector_input(head)
    assert vector is not None and feature is not None
    if vector.shape[1] == layout.channels and close_enough(vector, spatial_mean(feature, layout)):
        return head, last, None
    # Explain with the classifier proper: the first module fed a flat (B, D) vector.
    classifier = next(
        (c for c in sorted(recording.calls, key=lambda c: c.pre) if c.pre > last.post and _flat_input(c) is not None),
        head,
    )
    flat = _flat_input(classifier)
    return head, None, _refusal_reason(recording, last, layout, classifier, vector if flat is None else flat)


def _flat_input(call: Call) -> Tensor | None:
    value = call.input
    return value if isinstance(value, Tensor) and value.ndim == 2 and value.is_floating_point() else None


def _refusal_reason(recording: Recording, last: Call, layout: TapLayout, head: Call, vector: Tensor) -> str:
    feature = _as_map_tensor(last.output)
    assert feature is not None
    width = vector.shape[1]
    runs = recording.counts.get(head.name, 1)
    if runs > 1:
        return (
            f"its classifier layer {head.name!r} runs {runs} times per forward pass (several heads over several "
            "stages): there is no single global pooling to replace"
        )
    if (
        layout.kind == "tokens"
        and layout.prefix_tokens
        and width == layout.channels
        and close_enough(vector, feature[:, 0])
    ):
        return "it pools by its class token, not by averaging (class token, no average pooling)"
    if layout.kind != "tokens" and width == layout.channels:
        flat = feature.float().permute(0, 2, 3, 1) if layout.kind == "nchw" else feature.float()
        if close_enough(vector, flat.reshape(flat.shape[0], -1, flat.shape[-1]).amax(dim=1)):
            return "it takes a global maximum, not an average"
    for call in recording.calls:
        out = call.output
        if (
            isinstance(out, Tensor)
            and out.ndim == 4
            and last.post <= call.post < head.pre
            and out[0].numel() == width
            and out.shape[2] * out.shape[3] > 1
        ):
            return f"it pools to {out.shape[2]}x{out.shape[3]}, not global, and flattens that map into the classifier"
    if width != layout.channels and width % layout.channels == 0 and width // layout.channels > 1:
        ratio = width // layout.channels
        return f"its classifier reads {width} values, {ratio}x the last map's width: not a global pooling"
    return (
        f"no module's output averages to the input of {head.name!r}: the last feature map ({last.name!r}) "
        "is not globally average-pooled into the classifier"
    )


def discover(recording: Recording, oracle: LayoutOracle, logits: int | str | None = None) -> Discovery:
    """Find the global average pooling and the stage taps of a recorded model.

    Raises:
        NotPoolable: no global average pooling, with the reason (class token, 7x7 pooling, max...).
    """
    output = select_output(recording.output, logits)
    if not isinstance(output, Tensor) or output.ndim != 2:
        raise NotPoolable(f"its output is not a (batch, classes) logits tensor ({type(output).__name__})")
    found = _find_module_pool(recording, oracle)
    if found is not None:
        pool_call, pooled_layout = found
        source = pool_call.input
        pooled_call = canonical_producer(recording, source) or view_producer(recording, source)
        kind, pool_path = "module", pool_call.name
        until = pooled_call.post if pooled_call is not None else pool_call.pre
    else:
        last = _last_map(recording, oracle)
        if last is None:
            raise NotPoolable("no module produces a feature map with more than one position")
        head, pooled_call, reason = _find_head_input(recording, *last)
        if reason is not None:
            raise NotPoolable(reason)
        assert head is not None and pooled_call is not None
        pooled_layout = last[1]
        source = pooled_call.output
        named = canonical_producer(recording, source)
        if named is None:
            raise NotPoolable(f"the averaged map comes from {pooled_call.name!r}, which runs more than once")
        pooled_call = named
        kind, pool_path = "head_input", head.name
        until = pooled_call.post
    taps, last_end, alternatives = _stage_taps(recording, oracle, until, source, pooled_layout)
    if pooled_call is not None and pooled_call.output is source:  # the last stage itself, not a container
        pooled_call = canonical_producer(recording, source, after=last_end) or pooled_call
    pooled_path = pooled_call.name if pooled_call is not None else ""
    return Discovery(kind, pool_path, pooled_path, pooled_layout, taps, alternatives)


def _shape_key(layout: TapLayout, tensor: Tensor) -> tuple[int, int]:
    """(channels, positions): equal for the same stage whatever the layout (Swin's NHWC stage and its NCHW view)."""
    if layout.kind == "nchw":
        positions = tensor.shape[2] * tensor.shape[3]
    elif layout.kind == "nhwc":
        positions = tensor.shape[1] * tensor.shape[2]
    else:
        positions = tensor.shape[1] - layout.prefix_tokens
    return (layout.channels, int(positions))


def _stage_taps(
    recording: Recording, oracle: LayoutOracle, until: int, pooled: Tensor, pooled_layout: TapLayout
) -> tuple[tuple[tuple[str, TapLayout, bool, int | None], ...], int, dict]:
    """Taps at the end of the stem and of every stage before the pooled map, the last tap's end, fallbacks."""
    units = _units(recording, until)
    unit_outputs = {id(u.output) for u in units}
    runs: list[list[tuple[Call, TapLayout]]] = []
    stem_open = True
    last_output: object = None
    for call in units:
        tensor = _unit_tensor(call.output)
        layout = oracle.layout(call) if tensor is not None else None
        if tensor is None or not _has_grid(layout, tensor):
            continue
        assert layout is not None
        # The main path is a chain: a module that reads an earlier stage's output is a side branch.
        if last_output is not None and call.input is not last_output and id(call.input) in unit_outputs:
            continue
        last_output = call.output
        if not runs:
            runs.append([(call, layout)])  # the stem starts with the first layer...
            stem_open = True
        elif call.passthrough or (stem_open and _is_stem_piece(call.module)):
            runs[-1].append((call, layout))  # ...and takes the norms, activations and pooling after it
        elif len(runs) > 1 and _same_stage(runs[-1][-1], (call, layout)):
            runs[-1].append((call, layout))
        else:
            runs.append([(call, layout)])  # the stem (runs[0]) always ends in a tap of its own
            stem_open = False
    pooled_key = _shape_key(pooled_layout, pooled)
    taps: list[tuple[str, TapLayout, bool, int | None]] = []
    alternatives: dict[str, tuple] = {}
    previous_end = -1
    for run in runs:
        if any(c.output is pooled for c, _ in run):
            break  # the pooled map is read at the pooling by the last block
        call, layout = run[-1]
        named = canonical_producer(recording, call.output, after=previous_end)
        previous_end = call.post
        if named is None:
            continue  # produced only by a shared module: no hook can tell its calls apart
        # Modified in place later in the forward pass: the stream must keep a copy of the stage output.
        clone = getattr(call.output, "_version", 0) != call.version
        taps.append((named.name, layout, clone, output_index(call.output)))
        # Earlier modules of the same stage with the same shape: fallbacks if the last one's grid is
        # not in image order (Hiera's patch embedding before its token unrolling).
        key = _shape_key(layout, _unit_tensor(call.output))
        fallbacks = []
        for earlier, earlier_layout in reversed(run[:-1]):
            producer = canonical_producer(recording, earlier.output)
            if producer is not None and _shape_key(earlier_layout, _unit_tensor(earlier.output)) == key:
                version = getattr(earlier.output, "_version", 0) != earlier.version
                fallbacks.append((producer.name, earlier_layout, version, output_index(earlier.output)))
        alternatives[named.name] = tuple(dict.fromkeys(fallbacks))
    if len(taps) > 1 and _shape_key(taps[-1][1], _unit_tensor(_output_of(recording, taps[-1][0]))) == pooled_key:
        taps.pop()  # same shape as the pooled map: the same stage, read at the pooling (the stem always stays)
    last_end = recording.first(taps[-1][0]).post if taps else -1
    return tuple(taps), last_end, alternatives


def _same_stage(a: tuple[Call, TapLayout], b: tuple[Call, TapLayout]) -> bool:
    return _shape_key(a[1], _unit_tensor(a[0].output)) == _shape_key(b[1], _unit_tensor(b[0].output))


def _output_of(recording: Recording, name: str) -> object:
    call = recording.first(name)
    assert call is not None
    return call.output
