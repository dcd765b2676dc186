"""ROAD: RemOve And Debias (Rong et al., ICML 2022), with pytorch-grad-cam's imputer.

Instead of a constant substrate, removed pixels are filled by noisy linear imputation (each
removed pixel is the weighted mean of its 8 neighbours, solved as a sparse linear system,
plus Gaussian noise), which leaks far less of the removed shape to the model.
We reuse ``pytorch_grad_cam.metrics.road.NoisyLinearImputer`` for the imputation and keep our
own protocol around it, so that ROAD matches insertion/deletion:

- pixels are ranked like insertion/deletion (descending S, raster order for ties) and exactly
  round(q/100 H W) pixels are removed at percentile q (grad-cam thresholds a percentile
  instead, which removes a variable number of pixels when S has ties);
- MoRF removes the most relevant pixels first, LeRF the least relevant;
- the score is the softmax probability of class c; per image, in percent,
  ``road_morf`` = 100 mean_q p_MoRF(q) (lower is better), ``road_lerf`` = 100 mean_q p_LeRF(q)
  (higher is better) and ``road`` = (road_lerf - road_morf) / 2, the combined score of
  grad-cam's ``ROADCombined``.

The imputation runs on the CPU with scipy (about a second per 224x224 image and
percentile): it is by far the slowest metric. The noise is drawn from a forked, seeded RNG so
results are reproducible and the global RNG is left untouched.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

__all__ = ["DEFAULT_PERCENTILES", "road_images"]

DEFAULT_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def check_percentiles(percentiles: Sequence[float]) -> tuple[float, ...]:
    """Validate ROAD percentiles: a non-empty sequence of numbers strictly between 0 and 100."""
    values = tuple(float(q) for q in percentiles)
    if not values or any(not 0 < q < 100 for q in values):
        raise ValueError(f"road_percentiles must be numbers strictly between 0 and 100; got {percentiles!r}")
    return values


def road_images(
    image: torch.Tensor,
    ranks: torch.Tensor,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    *,
    noise: float = 0.01,
    seed: int = 0,
) -> torch.Tensor:
    """Imputed copies of one image for every percentile, MoRF then LeRF.

    Args:
        image: (C, H, W) image in the model's input space.
        ranks: (H, W) pixel ranks (0 = most salient), from
            :func:`xai_pool.metrics.perturbation.pixel_ranks`.
        percentiles: share of pixels removed, in percent, each in (0, 100).
        noise: standard deviation of the imputation noise, in the model's input space.
        seed: seed of the imputation noise.

    Returns:
        (2 P, C, H, W) float32 CPU tensor: P MoRF images, then P LeRF images.
    """
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    imputer = NoisyLinearImputer(noise=noise)
    img = image.detach().to("cpu", torch.float32)
    flat_ranks = ranks.detach().cpu()
    total = flat_ranks.numel()
    out = []
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # the imputer hands torch tensors to np.argwhere, which NumPy 2 flags as deprecated
        warnings.filterwarnings("ignore", message="__array_wrap__ must accept context", category=DeprecationWarning)
        torch.manual_seed(seed)
        for most_relevant_first in (True, False):
            for q in check_percentiles(percentiles):
                count = min(round(q / 100 * total), total - 1)
                if count == 0:
                    out.append(img.clone())
                    continue
                removed = flat_ranks < count if most_relevant_first else flat_ranks >= total - count
                # the imputer fills the pixels where the mask is 0
                out.append(imputer(img, (~removed).to(torch.float32)))
    return torch.stack(out)
