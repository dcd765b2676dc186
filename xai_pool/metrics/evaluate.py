"""``evaluate``: every metric for a batch of images and maps, with batched forward passes.

All forward passes of a chunk of images (the clean images, the AD/AG/AI explanation images
and every insertion/deletion step) go into one job list that is cut into full batches of
``batch_size``, mixing images and steps, so that only the very last batch of a chunk is
partial. Jobs that are mathematically identical share one forward: the clean image is the
first deletion point and the last insertion point, and it gives p for AD/AG/AI. The clean
jobs come first in the list, so the class c of an image (its clean argmax when no labels are
given) is known before any of its other jobs is scored. With the default step, an image
costs 2 n + 1 forwards for insertion + deletion (n = ceil(H W / step)) plus one for AD/AG/AI.

What does not depend on the map is shared when several maps of the same images are scored
(the dataset driver, :mod:`xai_pool.metrics.driver`): the checked options (:class:`Protocol`),
the substrates (:func:`build_sources`, once per batch) and the clean probabilities
(:class:`Shared`, once per batch and model). :func:`score` then runs no clean forward and
builds no substrate: an image costs 2 n + 1 forwards per map for AD/AG/AI + insertion +
deletion, plus one clean forward per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..runtime import eval_mode, model_device
from . import complexity as _complexity
from . import confidence as _confidence
from . import localization as _localization
from . import perturbation as _perturbation
from . import road as _road
from ._checks import (
    as_channel_stats,
    as_images,
    as_labels,
    as_maps,
    as_masks,
    check_label_range,
    check_probabilities,
)
from .maps import PreparedMaps, prepare_maps
from .registry import ALL_METRICS, DEFAULT_METRICS, METRICS, metrics_in_group

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "IMAGENET_MEAN",
    "model_statistics",
    "IMAGENET_STD",
    "Protocol",
    "Shared",
    "build_sources",
    "evaluate",
    "score",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_CONFIDENCE = metrics_in_group("confidence")
_CURVES = metrics_in_group("curve")
_LOCALIZATION = metrics_in_group("localization")
_ROAD = metrics_in_group("road")

# job kinds of the perturbation engine; x is source 0 of every image
_CLEAN, _EXPLAIN, _WHERE = 0, 1, 2
_X = 0


@dataclass(frozen=True)
class Protocol:
    """The checked options of the metrics: what to compute and how (see :func:`evaluate`).

    Build it with :meth:`create`, which validates every option that does not depend on the
    data, so a dataset run fails before its first batch.
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    step: int | None = None
    batch_size: int = 64
    masking_space: str = "pixel"
    mean: Any = IMAGENET_MEAN
    std: Any = IMAGENET_STD
    insertion_substrate: _perturbation.Substrate = None
    deletion_substrate: _perturbation.Substrate = None
    tolerance: float = 0.0
    road_percentiles: tuple[float, ...] = _road.DEFAULT_PERCENTILES
    road_noise: float = 0.01
    seed: int = 0
    on_invalid: str = "raise"
    return_curves: bool = False

    @classmethod
    def create(
        cls,
        *,
        metrics: Sequence[str] = DEFAULT_METRICS,
        step: int | None = None,
        batch_size: int = 64,
        masking_space: str = "pixel",
        mean: Sequence[float] | torch.Tensor = IMAGENET_MEAN,
        std: Sequence[float] | torch.Tensor = IMAGENET_STD,
        insertion_substrate: _perturbation.Substrate = None,
        deletion_substrate: _perturbation.Substrate = None,
        tolerance: float = 0.0,
        road_percentiles: Sequence[float] = _road.DEFAULT_PERCENTILES,
        road_noise: float = 0.01,
        seed: int = 0,
        on_invalid: str = "raise",
        return_curves: bool = False,
    ) -> Protocol:
        """Validate the options (arguments as for :func:`evaluate`).

        Raises:
            ValueError: an unknown metric, a non-positive step or batch size, an unknown
                masking space or ``on_invalid``, a negative tolerance, bad ROAD percentiles.
        """
        wanted = _check_metrics(metrics)
        _check_options(batch_size, masking_space, step)
        if on_invalid not in ("raise", "skip"):
            raise ValueError(f"on_invalid must be 'raise' or 'skip'; got {on_invalid!r}")
        if any(name in wanted for name in _LOCALIZATION) and not tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0 pixels; got {tolerance}")
        percentiles = _road.check_percentiles(road_percentiles) if any(n in wanted for n in _ROAD) else ()
        return cls(
            metrics=wanted,
            step=step,
            batch_size=batch_size,
            masking_space=masking_space,
            mean=mean,
            std=std,
            insertion_substrate=insertion_substrate,
            deletion_substrate=deletion_substrate,
            tolerance=tolerance,
            road_percentiles=percentiles,
            road_noise=road_noise,
            seed=seed,
            on_invalid=on_invalid,
            return_curves=return_curves,
        )

    def wants(self, group: str) -> bool:
        """Whether any requested metric belongs to the engine ``group`` of the registry."""
        return any(METRICS[name].group == group for name in self.metrics)

    @property
    def curves(self) -> tuple[str, ...]:
        """The requested curve metrics (``"insertion"``, ``"deletion"``), in that order."""
        return tuple(name for name in _CURVES if name in self.metrics)

    @property
    def uses_model(self) -> bool:
        """Whether any requested metric runs the model."""
        return any("model" in METRICS[name].needs for name in self.metrics)

    @property
    def needs_masks(self) -> bool:
        """Whether any requested metric needs object masks."""
        return any("masks" in METRICS[name].needs for name in self.metrics)


@dataclass(frozen=True)
class Shared:
    """What every map of one batch scored by one model has in common, computed once.

    Attributes:
        classes: (B,) int64 class c of each image, on the model's device.
        clean: (B,) float64 softmax probability of c on the clean image, same device.
        sources: (B, 1 + S, C, H, W) the images followed by the S curve substrates
            (:func:`build_sources`), or None when no curve metric is requested.
    """

    classes: torch.Tensor
    clean: torch.Tensor
    sources: torch.Tensor | None = None


def build_sources(images: torch.Tensor, protocol: Protocol) -> torch.Tensor | None:
    """The images and their curve substrates stacked as (B, 1 + S, C, H, W), or None.

    Substrate s (in the order of :attr:`Protocol.curves`) sits at index 1 + s. It does not
    depend on the model or the map, so the driver builds it once per batch.
    """
    curves = protocol.curves
    if not curves:
        return None
    sources = [images]
    for name in curves:
        default = "blur" if name == "insertion" else "zeros"
        substrate = getattr(protocol, f"{name}_substrate")
        sources.append(_perturbation.resolve_substrate(substrate, images, f"{name}_substrate", default))
    return torch.stack(sources, dim=1)


def model_statistics(model: nn.Module, mean: Any = None, std: Any = None) -> tuple[Any, Any]:
    """``(mean, std)``: the ones given, else the model's own normalisation.

    A :class:`~xai_pool.CAModel` knows its preprocessing (``model.preprocessing``); another
    classifier's is resolved from its metadata (``xai_pool.adapters.resolve_preprocessing``:
    declared, timm, torchvision, else ImageNet). Masking in pixel space undoes this
    normalisation, so the wrong statistics would silently change every AD/AG/AI value.
    """
    if mean is not None and std is not None:
        return mean, std
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is None or not hasattr(preprocessing, "mean"):
        from ..adapters import resolve_preprocessing

        preprocessing = resolve_preprocessing(model)
    return (preprocessing.mean if mean is None else mean), (preprocessing.std if std is None else std)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    saliency: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    masks: torch.Tensor | np.ndarray | None = None,
    mean: Sequence[float] | torch.Tensor | None = None,
    std: Sequence[float] | torch.Tensor | None = None,
    step: int | None = None,
    insertion_substrate: _perturbation.Substrate = None,
    deletion_substrate: _perturbation.Substrate = None,
    batch_size: int = 64,
    masking_space: str = "pixel",
    return_curves: bool = False,
    on_invalid: str = "raise",
    tolerance: float = 0.0,
    road_percentiles: Sequence[float] = _road.DEFAULT_PERCENTILES,
    road_noise: float = 0.01,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, np.ndarray]:
    """Compute saliency metrics, one value per image, in percent.

    The map S is the saliency upsampled bilinearly (``align_corners=False``) to the image
    size and min-max normalised per image; a constant map becomes S = 0 (see
    ``docs/metrics.md``). The class c is ``labels[i]``, or the model's argmax on the clean
    image when ``labels`` is None; scores are softmax probabilities of c computed in float64.

    Metrics (names for ``metrics``):

    - ``"ad"``, ``"ag"``, ``"ai"``: Average Drop / Gain / Increase (Grad-CAM++, Opti-CAM) on
      the explanation image normalize(denormalize(x) * S) (``masking_space="pixel"``) or
      x * S (``"input"``).
    - ``"insertion"``, ``"deletion"``: RISE AUC of the probability of c against the fraction
      of pixels changed, ``step`` pixels per step in descending order of S (raster order
      for ties).
    - ``"pointing_game"``, ``"energy_pointing_game"``: need ``masks``.
    - ``"road_morf"``, ``"road_lerf"``, ``"road"``: ROAD with noisy linear imputation (slow).
    - ``"sparsity"`` (Gini index) and ``"complexity"`` (normalised entropy) of S.

    Args:
        model: classifier returning logits (N, K) for images (N, C, H, W). It is put in eval
            mode for the call and every submodule's training flag is restored afterwards.
        images: (B, C, H, W) floating tensor, normalised exactly as the model takes it.
        saliency: (B, h, w) maps, numpy or tensor, at any resolution.
        labels: (B,) class indices, or None to explain the model's prediction.
        metrics: names of the metrics to compute.
        masks: (B, H, W) object masks for the localisation metrics: bool, or numbers that
            are all 0 or 1.
        mean: per-channel mean of the images' normalisation; default: the model's own
            (its profile's preprocessing, see :func:`model_statistics`).
        std: per-channel std of the images' normalisation; default: the model's own.
        step: pixels changed per insertion/deletion step; default W (one image row).
        insertion_substrate: start of the insertion curve: None (RISE blur of x), a number or
            tensor broadcastable to the images, or a callable images -> tensor; in the
            model's input space.
        deletion_substrate: what deleted pixels become: None (zeros in the model's input
            space, as RISE), a number, a tensor or a callable, as above.
        batch_size: images per forward pass.
        masking_space: ``"pixel"`` or ``"input"``, where AD/AG/AI multiply by S.
        return_curves: also return ``"insertion_curve"`` / ``"deletion_curve"``, (B, n + 1)
            probabilities at the fractions of
            :func:`~xai_pool.metrics.perturbation.curve_fractions`.
        on_invalid: ``"raise"`` rejects maps with NaN/inf; ``"skip"`` gives their images NaN
            (and target -1) and reports them in ``"valid"``.
        tolerance: pointing game radius in pixels.
        road_percentiles: percentages of pixels removed by ROAD.
        road_noise: standard deviation of ROAD's imputation noise (model input space).
        seed: seed of ROAD's imputation noise.
        device: where to build the perturbed images; default the model's device.

    Returns:
        A dict with one float64 array of shape (B,) per requested metric, plus ``"valid"``
        (bool, False for skipped maps), ``"target"`` (int64 class c, when the model was run)
        and the curves when asked.

    Raises:
        TypeError: an argument has the wrong type (e.g. integer images, float labels, a model
            that does not return a logits tensor).
        ValueError: shapes disagree, labels are out of range, an image holds NaN/inf, a map
            holds NaN/inf (with ``on_invalid="raise"``), the model returns non-finite logits,
            or an option is invalid.

    Example:
        >>> scores = evaluate(model, x, cams, y, metrics=("ad", "insertion"))  # doctest: +SKIP
        >>> scores["insertion"].mean()  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    mean, std = model_statistics(model, mean, std)
    protocol = Protocol.create(
        metrics=metrics,
        step=step,
        batch_size=batch_size,
        masking_space=masking_space,
        mean=mean,
        std=std,
        insertion_substrate=insertion_substrate,
        deletion_substrate=deletion_substrate,
        tolerance=tolerance,
        road_percentiles=road_percentiles,
        road_noise=road_noise,
        seed=seed,
        on_invalid=on_invalid,
        return_curves=return_curves,
    )
    return score(model, images, saliency, labels, protocol, masks=masks, device=device)


def score(
    model: nn.Module,
    images: torch.Tensor,
    saliency: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int] | None,
    protocol: Protocol,
    *,
    masks: torch.Tensor | np.ndarray | None = None,
    device: torch.device | str | None = None,
    shared: Shared | None = None,
) -> dict[str, np.ndarray]:
    """:func:`evaluate` with options checked once (a :class:`Protocol`).

    Args:
        model: the classifier, as for :func:`evaluate`.
        images: (B, C, H, W) images, as for :func:`evaluate`.
        saliency: (B, h, w) maps; a tensor on the model's device stays there.
        labels: (B,) classes or None; with ``shared``, pass ``shared.classes``.
        protocol: the metrics and their options.
        masks: (B, H, W) object masks for the localisation metrics.
        device: where to build the perturbed images; default the model's device.
        shared: the clean probabilities and substrates of these images for this model,
            computed once by the caller; None computes them here.

    Returns:
        The dict described in :func:`evaluate`.
    """
    x = as_images(images)
    batch, channels, height, width = x.shape
    maps = as_maps(saliency, batch)
    y = as_labels(labels, batch)
    m = as_masks(masks, batch, (height, width))
    if m is None and protocol.needs_masks:
        raise ValueError("the pointing game metrics need masks=(B, H, W) bool object masks")
    if shared is not None and (y is None or shared.classes.shape != (batch,)):
        raise ValueError("score(shared=...) needs labels=shared.classes, one class per image")
    wanted = protocol.metrics
    step = width if protocol.step is None else protocol.step
    use_model = protocol.uses_model
    if use_model and protocol.masking_space == "pixel" and protocol.wants("confidence"):
        mean_t = as_channel_stats(protocol.mean, "mean", channels)
        std_t = as_channel_stats(protocol.std, "std", channels)
    else:
        mean_t = std_t = torch.zeros(1, channels, 1, 1, dtype=torch.float64)
    target_device = torch.device(device) if device is not None else model_device(model, x.device)
    # MPS has no float64: the maps are prepared on the CPU there
    map_device = torch.device("cpu") if target_device.type == "mps" else target_device

    prepared = prepare_maps(maps.to(map_device), (height, width), on_invalid=protocol.on_invalid)
    valid = prepared.valid.cpu().numpy()
    out: dict[str, np.ndarray] = {name: np.full(batch, np.nan) for name in wanted}

    if "pointing_game" in wanted:
        out["pointing_game"] = (
            _localization.pointing_game(prepared.scores, m.to(map_device), prepared.constant, protocol.tolerance)
            .cpu()
            .numpy()
        )
    if "energy_pointing_game" in wanted:
        out["energy_pointing_game"] = (
            _localization.energy_pointing_game(prepared.normalized, m.to(map_device)).cpu().numpy()
        )
    if "sparsity" in wanted:
        out["sparsity"] = _complexity.sparsity(prepared.normalized).cpu().numpy()
    if "complexity" in wanted:
        out["complexity"] = _complexity.complexity(prepared.normalized).cpu().numpy()

    if use_model:
        engine = _Engine(model, protocol=protocol, step=step, device=target_device, mean=mean_t, std=std_t)
        model_out = engine.run(x, prepared, y, np.flatnonzero(valid), shared)
        out.update(model_out)
    for value in out.values():
        if value.dtype.kind == "f":
            value[~valid] = np.nan
    out["valid"] = valid
    return out


def check_logits(logits: Any, count: int) -> torch.Tensor:
    """``logits`` if it is an (N, num_classes) tensor for ``count`` images, else a TypeError."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != count:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(
            f"model must return a logits tensor of shape (N, num_classes) for N images; "
            f"got {shape}. "
            f"Wrap the model so that its forward returns the logits."
        )
    return logits


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    names = tuple(dict.fromkeys(metrics))
    unknown = [name for name in names if name not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(ALL_METRICS)}")
    if not names:
        raise ValueError(f"metrics must name at least one metric from {list(ALL_METRICS)}")
    return names


def _check_options(batch_size: int, masking_space: str, step: int | None) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if masking_space not in ("pixel", "input"):
        raise ValueError(f"masking_space must be 'pixel' or 'input'; got {masking_space!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise ValueError(f"step must be a positive int (pixels per step) or None for one row; got {step!r}")


class _Engine:
    """Runs every forward pass a set of metrics needs, in full mixed batches."""

    def __init__(
        self,
        model: nn.Module,
        *,
        protocol: Protocol,
        step: int,
        device: torch.device,
        mean: torch.Tensor,
        std: torch.Tensor,
    ) -> None:
        self.model = model
        self.wanted = protocol.metrics
        self.step = step
        self.batch_size = protocol.batch_size
        self.device = device
        stats_dtype = torch.float32 if device.type == "mps" else torch.float64
        self.mean = mean.to(device, stats_dtype)
        self.std = std.to(device, stats_dtype)
        self.masking_space = protocol.masking_space
        self.substrates = {"insertion": protocol.insertion_substrate, "deletion": protocol.deletion_substrate}
        self.return_curves = protocol.return_curves
        self.percentiles = protocol.road_percentiles
        self.road_noise = protocol.road_noise
        self.seed = protocol.seed
        self.num_classes: int | None = None

    def run(
        self,
        images: torch.Tensor,
        prepared: PreparedMaps,
        labels: torch.Tensor | None,
        indices: np.ndarray,
        shared: Shared | None = None,
    ) -> dict[str, np.ndarray]:
        """Score the images at ``indices`` (the valid ones); other rows stay NaN / -1."""
        batch, _, height, width = images.shape
        n = _perturbation.num_steps(height, width, self.step)
        wants_conf = any(name in self.wanted for name in _CONFIDENCE)
        wants_curves = [name for name in _CURVES if name in self.wanted]
        wants_road = any(name in self.wanted for name in _ROAD)
        p_all = np.full(batch, np.nan)
        o_all = np.full(batch, np.nan)
        target = np.full(batch, -1, dtype=np.int64)
        curves = {name: np.full((batch, n + 1), np.nan) for name in wants_curves}
        road_all = np.full((batch, 2 * len(self.percentiles)), np.nan)
        with eval_mode(self.model), torch.inference_mode():
            # chunks of images bound the memory taken by sources, ranks and job tables
            for start in range(0, len(indices), self.batch_size):
                idx = indices[start : start + self.batch_size]
                idx_maps = torch.as_tensor(idx, device=prepared.scores.device)
                x = images[torch.as_tensor(idx, device=images.device)].to(self.device)
                chunk_labels = (
                    labels[torch.as_tensor(idx, device=labels.device)].to(self.device) if labels is not None else None
                )
                clean = stacked = None
                if shared is not None:
                    at = torch.as_tensor(idx, device=shared.clean.device)
                    clean = shared.clean[at].to(self.device)
                    if wants_curves:
                        whole = len(idx) == batch  # indices are sorted and unique
                        stacked = shared.sources if whole else shared.sources[at]
                        stacked = stacked.to(self.device)
                ranks = None
                if wants_curves or wants_road:
                    ranks = _perturbation.pixel_ranks(prepared.scores[idx_maps]).to(self.device)
                maps = prepared.normalized[idx_maps].to(self.device) if wants_conf else None
                res = self._run_chunk(x, maps, ranks, chunk_labels, n, wants_curves, stacked, clean)
                target[idx] = res["target"]
                p_all[idx] = res["p"]
                if wants_conf:
                    o_all[idx] = res["o"]
                for name in wants_curves:
                    curves[name][idx] = res[name]
                if wants_road:
                    road_all[idx] = self._road(x, ranks, torch.as_tensor(res["target"], device=self.device))
        out: dict[str, np.ndarray] = {"target": target}
        p = torch.from_numpy(p_all)
        o = torch.from_numpy(o_all)
        if "ad" in self.wanted:
            out["ad"] = _confidence.average_drop(p, o).numpy()
        if "ag" in self.wanted:
            out["ag"] = _confidence.average_gain(p, o).numpy()
        if "ai" in self.wanted:
            out["ai"] = _confidence.average_increase(p, o).numpy()
        fractions = _perturbation.curve_fractions(height, width, self.step)
        for name in wants_curves:
            out[name] = _perturbation.auc(curves[name], fractions)
            if self.return_curves:
                out[f"{name}_curve"] = curves[name]
        if wants_road:
            half = len(self.percentiles)
            morf = 100 * road_all[:, :half].mean(axis=1)
            lerf = 100 * road_all[:, half:].mean(axis=1)
            road = {"road_morf": morf, "road_lerf": lerf, "road": (lerf - morf) / 2}
            out.update({name: road[name] for name in _ROAD if name in self.wanted})
        return out

    def _run_chunk(
        self,
        x: torch.Tensor,
        maps: torch.Tensor | None,
        ranks: torch.Tensor | None,
        labels: torch.Tensor | None,
        n: int,
        wants_curves: list[str],
        stacked: torch.Tensor | None = None,
        clean: torch.Tensor | None = None,
    ) -> dict[str, np.ndarray]:
        """Forward every job of a chunk; ``stacked``/``clean`` are the shared sources and p, if any."""
        count, _, height, width = x.shape
        slot = {name: 1 + i for i, name in enumerate(wants_curves)}
        if wants_curves and stacked is None:
            sources = [x]
            for name in wants_curves:
                default = "blur" if name == "insertion" else "zeros"
                sources.append(_perturbation.resolve_substrate(self.substrates[name], x, f"{name}_substrate", default))
            stacked = torch.stack(sources, dim=1)

        # Job table on the CPU, one column per forward: kind, image, first source, second
        # source, pixels changed. Clean jobs (when p is not given) come first so classes are
        # known in time.
        every = torch.arange(count)
        blocks = []
        if clean is None:
            blocks.append(_job_block(_CLEAN, every, 0, 0, torch.zeros(count)))
        if maps is not None:
            blocks.append(_job_block(_EXPLAIN, every, 0, 0, torch.zeros(count)))
        changed = torch.clamp(torch.arange(n + 1) * self.step, max=height * width)
        for name in wants_curves:
            if name == "deletion":  # points 1..n: the substrate on the top-ranked pixels
                counts, first, second = changed[1:], slot[name], _X
            else:  # points 0..n-1: x on the top-ranked pixels, the substrate elsewhere
                counts, first, second = changed[:-1], _X, slot[name]
            blocks.append(_job_block(_WHERE, every.repeat_interleave(n), first, second, counts.repeat(count)))
        kind, image, first_src, second_src, n_changed = torch.cat(blocks, dim=1)
        jobs = kind.shape[0]
        probs = torch.empty(jobs, dtype=torch.float64, device=self.device)
        classes = labels.clone() if labels is not None else torch.zeros(count, dtype=torch.long, device=self.device)

        workspace = None
        if wants_curves:
            capacity = min(self.batch_size, int((kind == _WHERE).sum()))
            workspace = _perturbation.Workspace(capacity, x.shape[1:], self.device, x.dtype)

        def dev(t: torch.Tensor) -> torch.Tensor:
            return t.to(self.device, non_blocking=True)

        for begin in range(0, jobs, self.batch_size):
            positions = torch.arange(begin, min(begin + self.batch_size, jobs))
            parts, order = [], []
            for job_kind in (_CLEAN, _EXPLAIN, _WHERE):
                pos = positions[kind[positions] == job_kind]
                if not len(pos):
                    continue
                if job_kind == _CLEAN:
                    parts.append(x[dev(image[pos])])
                elif job_kind == _EXPLAIN:
                    img = dev(image[pos])
                    parts.append(
                        _confidence.explanation_images(x[img], maps[img], self.mean, self.std, self.masking_space)
                    )
                else:
                    parts.append(
                        _perturbation.perturbed_batch(
                            stacked,
                            ranks,
                            image[pos],
                            first_src[pos],
                            second_src[pos],
                            dev(n_changed[pos]),
                            workspace,
                        )
                    )
                order.append(pos)
            order_t = torch.cat(order)
            logits = self._forward(torch.cat(parts) if len(parts) > 1 else parts[0], labels)
            if labels is None:
                # clean jobs are jobs 0..count-1 and sit first in `order`: fix their classes
                # before reading any probability of this batch
                clean_jobs = order_t[order_t < count]
                if len(clean_jobs):
                    classes[dev(clean_jobs)] = logits[: len(clean_jobs)].argmax(dim=1)
            probs[dev(order_t)] = _confidence.probabilities(logits, classes[dev(image[order_t])])

        probs_np = probs.cpu().numpy()
        check_probabilities(probs_np, "forward passes")
        res: dict[str, np.ndarray] = {"target": classes.cpu().numpy()}
        offset = 0
        if clean is None:
            res["p"] = probs_np[:count]
            offset = count
        else:
            res["p"] = clean.cpu().numpy()
            check_probabilities(res["p"], "clean forward pass")
        if maps is not None:
            res["o"] = probs_np[offset : offset + count]
            offset += count
        for name in wants_curves:
            block = probs_np[offset : offset + count * n].reshape(count, n)
            offset += count * n
            curve = np.empty((count, n + 1))
            # the clean image is both the first deletion point and the last insertion point
            if name == "deletion":
                curve[:, 0], curve[:, 1:] = res["p"], block
            else:
                curve[:, :-1], curve[:, -1] = block, res["p"]
            res[name] = curve
        return res

    def _forward(self, batch: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        logits = check_logits(self.model(batch), batch.shape[0])
        if self.num_classes is None:
            self.num_classes = logits.shape[1]
            if labels is not None:
                check_label_range(labels, self.num_classes)
        return logits

    def _road(self, x: torch.Tensor, ranks: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
        per_image = 2 * len(self.percentiles)
        probs = []
        for i in range(x.shape[0]):
            imputed = _road.road_images(x[i], ranks[i], self.percentiles, noise=self.road_noise, seed=self.seed)
            imputed = imputed.to(self.device, x.dtype)
            scores = []
            for begin in range(0, per_image, self.batch_size):
                logits = self._forward(imputed[begin : begin + self.batch_size], None)
                scores.append(_confidence.probabilities(logits, classes[i].expand(logits.shape[0])))
            probs.append(torch.cat(scores))
        road = torch.stack(probs).cpu().numpy()
        check_probabilities(road, "ROAD forward passes")
        return road


def _job_block(kind: int, image: torch.Tensor, first: int, second: int, changed: torch.Tensor) -> torch.Tensor:
    size = image.shape[0]
    return torch.stack(
        [
            torch.full((size,), kind, dtype=torch.long),
            image.long(),
            torch.full((size,), first, dtype=torch.long),
            torch.full((size,), second, dtype=torch.long),
            changed.long(),
        ]
    )
