"""Score-CAM with bounded memory: masked images are built and scored one batch at a time.

Score-CAM (Wang et al., CVPR-W 2020, https://arxiv.org/abs/1910.01279) weights each channel
``k`` of the target layer by the model's score on the input masked with that channel's
activation map, upsampled to the input and min-max normalised:
``w_k = softmax_k(score(x * norm(up(A_k))))``. The map is ``ReLU(sum_k w_k A_k)``.

pytorch-grad-cam's ``ScoreCAM`` computes the same weights but first materialises every
masked image, (B, C, 3, H, W) at once (1.2 GB per 224x224 image for ResNet-50's layer4), and
keeps the target-layer activations of every masked batch. This subclass:

- builds the masks and the masked images of ``batch_size`` channels at a time, so memory is
  bounded by one batch whatever the number of channels or images;
- runs every masked forward pass under ``torch.inference_mode`` (no autograd graph);
- gives all constant channels one forward pass: a constant activation map (very often an
  all-zero ReLU channel) min-max normalises to the all-zero mask, so all of them, for every
  image of the batch, share the score of the all-zero image;
- packs channels of different images into the same batch.

The maps equal pytorch-grad-cam's (same masks, same scores, same softmax) up to float
rounding from different batch compositions. One deliberate difference: a channel that is
constant but not zero is given the all-zero mask (0/0 in the definition); pytorch-grad-cam
upsamples it first, which turns it into float rounding noise that its min-max then blows up
to a pseudo-random mask. For zero channels, the usual case after a ReLU, both agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam.base_cam import BaseCAM
from torch import Tensor, nn

from ..minmax import minmax_normalize
from ..runtime import save_training_flags

__all__ = ["ScoreCAM"]

_MASK_EPS = 1e-8  # pytorch-grad-cam's ScoreCAM normalisation


class ScoreCAM(BaseCAM):
    """Batched, memory-bounded Score-CAM (a pytorch-grad-cam ``BaseCAM``).

    Works on any classifier, a :class:`~xai_pool.CAModel` in either pooling included (the
    masked images go through the model as it is: GAP or CA).

    Args:
        model: the classifier.
        target_layers: layers whose activation maps mask the input (usually the last stage).
        reshape_transform: as in pytorch-grad-cam, for layers whose output is not NCHW.
        batch_size: masked images per forward pass; peak memory grows linearly with it. 16
            (pytorch-grad-cam's default) was the fastest of 16/32/64 on CPU for ResNet-18 at
            224x224; a GPU may prefer more.
        progress: show a tqdm bar over the masked batches.

    Attributes:
        forward_passes: masked images scored by the last call (for benchmarks and tests).
        constant_channels: constant channels found by the last call (over all images and layers).

    Unlike ``BaseCAM``, leaving the ``with`` block also restores the train/eval flags that
    ``BaseCAM.__init__`` overwrote with ``model.eval()``.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        reshape_transform: Callable | None = None,
        *,
        batch_size: int = 16,
        progress: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int (masked images per forward pass), got {batch_size!r}")
        self._restore_modes = save_training_flags(model)  # BaseCAM.__init__ calls model.eval()
        super().__init__(model, list(target_layers), reshape_transform=reshape_transform, uses_gradients=False)
        self.batch_size = batch_size
        self.progress = progress
        self.forward_passes = 0
        self.constant_channels = 0

    def forward(
        self, input_tensor: Tensor, targets: Sequence[Callable] | None, eigen_smooth: bool = False
    ) -> np.ndarray:
        """Score-CAM maps (B, H, W); the whole call runs without autograd."""
        self.forward_passes = 0
        self.constant_channels = 0
        with torch.inference_mode():
            return super().forward(input_tensor.detach(), targets, eigen_smooth)

    def get_cam_weights(
        self,
        input_tensor: Tensor,
        target_layer: nn.Module,
        targets: Sequence[Callable],
        activations: np.ndarray,
        grads: np.ndarray | None,
    ) -> np.ndarray:
        """Softmax over channels of the scores of the masked images, (B, C)."""
        acts = torch.as_tensor(activations)
        n_images, n_channels = acts.shape[:2]
        scores = torch.empty(n_images, n_channels, dtype=torch.float32)
        flat = acts.flatten(2)
        constant = flat.amax(dim=2) == flat.amin(dim=2)
        with torch.inference_mode():
            if constant.any():
                # Every constant channel's mask is 0, so its masked image is the zero image.
                output = self._run(torch.zeros_like(input_tensor[:1]))[0]
                for b in range(n_images):
                    scores[b, constant[b]] = float(_score(targets[b], output))  # host scalar: any device
                self.constant_channels += int(constant.sum())
            pairs = (~constant).nonzero()  # (N, 2): image, channel
            batches = range(0, len(pairs), self.batch_size)
            if self.progress:
                import tqdm

                batches = tqdm.tqdm(batches, desc="Score-CAM", unit="batch", leave=False)
            size = tuple(input_tensor.shape[-2:])
            for start in batches:
                image_idx, channel_idx = pairs[start : start + self.batch_size].unbind(dim=1)
                masks = self._masks(acts[image_idx, channel_idx], size, input_tensor.device)
                outputs = self._run(input_tensor[image_idx] * masks[:, None])
                row_scores = [_score(targets[int(b)], o) for b, o in zip(image_idx, outputs, strict=True)]
                scores[image_idx, channel_idx] = torch.stack(row_scores).float().cpu()
        return torch.softmax(scores, dim=-1).numpy()

    @staticmethod
    def _masks(maps: Tensor, size: tuple[int, int], device: torch.device) -> Tensor:
        # The same operations, in the same order, as pytorch-grad-cam's ScoreCAM.
        upsampled = F.interpolate(maps[None].to(device), size=size, mode="bilinear", align_corners=True)[0]
        return minmax_normalize(upsampled, eps=_MASK_EPS)

    def _run(self, batch: Tensor) -> Tensor:
        recorded = self.activations_and_grads.activations
        n_recorded = len(recorded)
        try:
            outputs = self.model(batch)
        finally:
            # The target-layer hooks also fire on masked passes; drop what they stored.
            del recorded[n_recorded:]
        self.forward_passes += batch.shape[0]
        return outputs

    def __del__(self) -> None:
        # BaseCAM.__del__ fails on an object whose __init__ raised before the hooks existed.
        hooks = getattr(self, "activations_and_grads", None)
        if hooks is not None:
            hooks.release()

    def __exit__(self, exc_type: object, exc_value: object, exc_tb: object) -> None:
        """Release the hooks and restore the train/eval flags; exceptions propagate."""
        self.activations_and_grads.release()
        self._restore_modes()


def _score(target: Callable, output: Tensor) -> Tensor:
    value = target(output)
    if isinstance(value, (int, float)):
        value = torch.tensor(float(value), device=output.device)
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise ValueError(
            f"a Score-CAM target must map one sample's output to a scalar, got "
            f"{type(value).__name__} {tuple(getattr(value, 'shape', ()))} from {type(target).__name__}"
        )
    return value.reshape(())
