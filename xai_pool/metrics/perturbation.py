"""Insertion and deletion (Petsiuk et al., RISE, BMVC 2018): ranking, substrates, curves, AUC.

Pixels are ranked by descending saliency, ties broken by raster order (a stable sort), and
``step`` pixels change per iteration. With n = ceil(H W / step) the curve has n + 1 points;
point k has m_k = min(k step, H W) pixels changed, so the last step may be partial, and its
x coordinate is m_k / (H W) in [0, 1]. The y coordinate is the softmax probability of the
class c. AUC = 100 * trapezoid(y, x).

- Deletion starts from x and replaces the ranked pixels by the deletion substrate
  (default: zeros in the model's input space, as RISE).
- Insertion starts from the insertion substrate (default: RISE's blur of x, an 11x11
  Gaussian kernel with sigma 5 and zero padding, applied in the model's input space) and
  reveals the ranked pixels of x.

The perturbed image for point k of either curve is ``where(rank < m_k, a, b)``, built on the
model's device by :func:`perturbed_batch` from precomputed ranks, never by Python loops over
pixels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SUBSTRATES",
    "NamedSubstrate",
    "Substrate",
    "auc",
    "curve_fractions",
    "named_substrate",
    "num_steps",
    "pixel_ranks",
    "resolve_substrate",
    "rise_blur",
    "rise_blur_kernel",
]

Substrate = torch.Tensor | float | Callable[[torch.Tensor], torch.Tensor] | None


def num_steps(height: int, width: int, step: int) -> int:
    """Number of perturbation steps n = ceil(H W / step); the curve has n + 1 points."""
    return math.ceil(height * width / step)


def curve_fractions(height: int, width: int, step: int) -> np.ndarray:
    """The x axis of the curves: fraction of pixels changed at each of the n + 1 points."""
    total = height * width
    counts = np.minimum(np.arange(num_steps(height, width, step) + 1) * step, total)
    return counts / total


def auc(curves: torch.Tensor | np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Area under each curve (trapezoid rule over ``fractions``), in percent.

    Args:
        curves: (B, n + 1) scores.
        fractions: (n + 1,) x coordinates from :func:`curve_fractions`.

    Returns:
        (B,) float64 areas times 100.
    """
    y = torch.as_tensor(curves, dtype=torch.float64)
    x = torch.as_tensor(fractions, dtype=torch.float64, device=y.device)
    return (100 * torch.trapezoid(y, x, dim=-1)).cpu().numpy()


def pixel_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each pixel in descending order of ``scores``, ties broken by raster order.

    Args:
        scores: (B, H, W) maps.

    Returns:
        (B, H, W) int32 ranks: 0 for the most salient pixel, H W - 1 for the least.
    """
    batch, height, width = scores.shape
    flat = scores.reshape(batch, -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    positions = torch.arange(flat.shape[1], device=flat.device, dtype=torch.int32).expand(batch, -1)
    ranks = torch.empty(flat.shape, dtype=torch.int32, device=flat.device)
    ranks.scatter_(1, order, positions)
    return ranks.view(batch, height, width)


def rise_blur_kernel(size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's blur kernel: ``scipy.ndimage.gaussian_filter`` applied to a unit impulse.

    This is how RISE builds it (``gkern`` in eclique/RISE ``evaluation.py``). scipy's default
    ``reflect`` boundary folds the Gaussian tails back into the window, so the kernel is not
    a truncated, renormalised Gaussian; it sums to 1.

    Returns:
        (size, size) float64 kernel.
    """
    return _cached_kernel(size, sigma).clone()


@functools.lru_cache(maxsize=8)
def _cached_kernel(size: int, sigma: float) -> torch.Tensor:
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1.0
    return torch.from_numpy(gaussian_filter(impulse, sigma))


def rise_blur(images: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Blur each channel with :func:`rise_blur_kernel`, zero padding, same size (RISE)."""
    channels = images.shape[1]
    kernel = _cached_kernel(size, sigma).to(images.device, images.dtype)
    weight = kernel.expand(channels, 1, size, size)
    return F.conv2d(images, weight, padding=size // 2, groups=channels)


def resolve_substrate(substrate: Substrate, images: torch.Tensor, name: str, default: str) -> torch.Tensor:
    """Materialise a substrate for a batch of images.

    Args:
        substrate: None for the default, a number, a tensor broadcastable to the images, or a
            callable images -> tensor of the images' shape.
        images: (N, C, H, W) images on the model's device.
        name: the argument name, for error messages.
        default: ``"zeros"`` or ``"blur"``.

    Returns:
        (N, C, H, W) tensor on the images' device and dtype.

    Raises:
        TypeError: the substrate is of an unsupported type or the callable returns no tensor.
        ValueError: its shape does not broadcast to the images or it is not finite.
    """
    if substrate is None:
        return torch.zeros_like(images) if default == "zeros" else rise_blur(images)
    if callable(substrate) and not isinstance(substrate, torch.Tensor):
        out = substrate(images)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{name} callable must return a torch.Tensor; got {type(out).__name__}")
    elif isinstance(substrate, (torch.Tensor, np.ndarray, int, float)):
        out = torch.as_tensor(substrate)
    else:
        raise TypeError(
            f"{name} must be None, a number, a tensor broadcastable to the images or a callable "
            f"images -> tensor; got {type(substrate).__name__}"
        )
    try:
        out = torch.broadcast_to(out.to(images.device, images.dtype), images.shape)
    except RuntimeError as err:
        raise ValueError(
            f"{name} of shape {tuple(out.shape)} does not broadcast to the images' shape {tuple(images.shape)}"
        ) from err
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} must be finite")
    return out


#: substrates that can be chosen by name (``xai-pool evaluate --insertion-substrate``...)
SUBSTRATES: dict[str, str] = {
    "blur": "RISE's blur of the image (11x11 Gaussian, sigma 5, zero padding): the default insertion start",
    "box-blur": "5x5 box blur, zero padding counted (the CA-Stream authors' insertion start)",
    "zeros": "zeros in the model's input space, i.e. the normalisation mean colour: the default deletion",
    "black": "black pixels (0 in [0, 1] RGB), normalised with mean/std",
}


class NamedSubstrate:
    """A substrate chosen by name: a callable ``images -> tensor`` that records its name.

    Args:
        name: a key of :data:`SUBSTRATES`.
        mean: per-channel normalisation mean (needed by ``"black"``).
        std: per-channel normalisation std (needed by ``"black"``).

    Raises:
        ValueError: unknown name, or ``"black"`` without mean and std.
    """

    def __init__(self, name: str, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        if name not in SUBSTRATES:
            raise ValueError(f"unknown substrate {name!r}; choose from {list(SUBSTRATES)}")
        if name == "black" and (mean is None or std is None):
            raise ValueError("the 'black' substrate needs the images' normalisation mean and std")
        self.name = name
        self.mean = tuple(float(v) for v in mean) if mean is not None else None
        self.std = tuple(float(v) for v in std) if std is not None else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The substrate of ``images`` (B, C, H, W): what a removed pixel becomes."""
        if self.name == "blur":
            return rise_blur(images)
        if self.name == "box-blur":
            return F.avg_pool2d(images, 5, 1, 2, count_include_pad=True)
        if self.name == "zeros":
            return torch.zeros_like(images)
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        return ((0 - mean) / std).expand_as(images)

    def __repr__(self) -> str:
        return f"NamedSubstrate({self.name!r})"


def named_substrate(name: str, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Substrate:
    """The substrate called ``name`` (see :data:`SUBSTRATES`), for ``evaluate``'s substrate options."""
    return NamedSubstrate(name, mean, std)


class Workspace:
    """Output buffers reused by every batch of a chunk.

    A fresh (batch, C, H, W) tensor per batch costs page faults on the CPU (large blocks are
    mmap-ed and zeroed by the kernel on first touch), which measured about as much as
    building the images; writing into the same buffers avoids it. The tensors returned by
    :func:`perturbed_batch` are views of ``out``: the next batch overwrites them.
    """

    def __init__(self, capacity: int, image_shape: torch.Size, device: torch.device, dtype: torch.dtype) -> None:
        channels, height, width = image_shape
        self.out = torch.empty(capacity, channels, height, width, device=device, dtype=dtype)
        self.mask = torch.empty(capacity, height, width, device=device, dtype=torch.bool)


def perturbed_batch(
    sources: torch.Tensor,
    ranks: torch.Tensor,
    image_index: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    changed: torch.Tensor,
    workspace: Workspace | None = None,
) -> torch.Tensor:
    """Build perturbed images ``where(rank < changed, sources[first], sources[second])``.

    Jobs are processed in runs that share (image, first, second), e.g. consecutive steps of
    one curve: each run is one comparison and one broadcast ``where``, so a batch costs a
    handful of kernels whatever its size (per-job gathers cost one parallel region per
    image, which is slow on a busy CPU).

    Args:
        sources: (N, S, C, H, W) candidate images per image (e.g. x, deletion and insertion
            substrates).
        ranks: (N, H, W) int32 pixel ranks from :func:`pixel_ranks`.
        image_index: (J,) CPU tensor, image of each job.
        first: (J,) CPU tensor, source shown on the ``changed`` top-ranked pixels.
        second: (J,) CPU tensor, source shown elsewhere.
        changed: (J,) number of top-ranked pixels taken from ``first``.
        workspace: buffers of capacity >= J to write into; None allocates new tensors.

    Returns:
        (J, C, H, W) images (a view of ``workspace.out`` when a workspace is given).
    """
    jobs = image_index.shape[0]
    height, width = ranks.shape[1:]
    if workspace is None:
        out = torch.empty(jobs, *sources.shape[2:], device=sources.device, dtype=sources.dtype)
        mask = torch.empty(jobs, height, width, device=ranks.device, dtype=torch.bool)
    else:
        out, mask = workspace.out[:jobs], workspace.mask[:jobs]
    threshold = changed.to(ranks.device, ranks.dtype).view(-1, 1, 1)
    key = torch.stack([image_index, first, second], dim=1).cpu()
    breaks = (torch.nonzero((key[1:] != key[:-1]).any(dim=1)).flatten() + 1).tolist()
    for begin, end in zip([0, *breaks], [*breaks, jobs], strict=True):
        i, a, b = key[begin].tolist()
        run_mask = torch.lt(ranks[i], threshold[begin:end], out=mask[begin:end])
        torch.where(run_mask.unsqueeze(1), sources[i, a], sources[i, b], out=out[begin:end])
    return out
