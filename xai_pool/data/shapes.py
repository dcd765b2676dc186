"""ShapesScenes: a procedurally generated benchmark with ground-truth object masks.

Every scene holds exactly one *target* whose shape is the class (one of
:data:`SHAPE_CLASSES`), drawn with a random position (always fully inside the image),
scale, rotation and colour, on a cluttered background: a smooth random colour field (a
random base colour with smooth per-channel variations), stripes of random direction,
period and colour, pixel noise, and 1-3 *distractors* that are not class shapes (elongated
ellipses with an aspect ratio of at least 2, and thin bars with an aspect ratio of at least
3). Distractors never overlap the target (they are placed outside its bounding circle) nor
each other (so two bars cannot cross into a plus), and the target is drawn last, so the
label is decidable from the target alone. Every object is given a colour that contrasts with
the background under it, by the same rule for targets and distractors, so contrast does not
single out the target. The classes are all mirror-symmetric and drawn at uniformly random
rotations, so flips and 90-degree rotations never change a label. The difficulty knobs
(colour variation, stripe opacity, contrast, noise, object sizes) are gathered in
``_Difficulty``; the defaults were tuned so that the embedded ShapesResNet learns the task
(>= 90% test accuracy) within its CPU budget while the task stays far from trivial.

Scenes are deterministic per index: the scene at index ``i`` depends only on
``(split, seed, i)`` (through ``numpy.random.default_rng([seed, split_id, i])``), never on
the order of access or on the dataset length, and no file is read or written.

Edges and the mask: objects are anti-aliased by supersampling each pixel on a 3x3 grid;
a pixel is blended with the object colour in proportion to its coverage (the fraction of
its 9 samples inside the shape). ``mask`` marks every pixel with coverage > 0, i.e. exactly
the pixels whose colour the target contributed to; the fractional coverage is available
from :meth:`ShapesScenes.render`. Images are quantised to 8 bits like a photograph, then
normalised with :attr:`ShapesScenes.mean` and :attr:`ShapesScenes.std`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["SHAPE_CLASSES", "SHAPES_MEAN", "SHAPES_STD", "ShapesScenes", "RenderedScene", "normalization"]

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "crescent",
    "hourglass",
    "arrow",
    "l_shape",
)

# Per-channel statistics of the 8-bit images scaled to [0, 1], measured on 4,000 training
# scenes at size 64 (seed 0); they depend little on size or seed.
SHAPES_MEAN: tuple[float, float, float] = (0.4992, 0.4963, 0.5000)
SHAPES_STD: tuple[float, float, float] = (0.2009, 0.1993, 0.2008)

_SPLITS = {"train": 0, "test": 1}
_DEFAULT_N = {"train": 6000, "test": 2000}
_SUPERSAMPLE = 3  # samples per pixel side for anti-aliasing
_MIN_SIZE = 32


@dataclass(frozen=True)
class _Difficulty:
    """Every knob of the benchmark's difficulty, in one place (sizes are fractions of the side)."""

    colour_variation: float = 0.35  # +- smooth variation of the background around its base colour
    stripe_strength: tuple[float, float] = (0.05, 0.3)  # opacity of the background stripes
    contrast: float = 0.35  # minimum RGB distance between an object and the background under it
    noise: float = 0.03  # std of the per-pixel Gaussian noise
    target_radius: tuple[float, float] = (0.15, 0.23)
    distractor_radius: tuple[float, float] = (0.13, 0.22)


_DIFFICULTY = _Difficulty()


def normalization() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The ``(mean, std)`` per RGB channel that ShapesScenes images are normalised with.

    Returns:
        Two 3-tuples for ``torchvision.transforms.Normalize(mean, std)``, for images in [0, 1].
    """
    return SHAPES_MEAN, SHAPES_STD


# --------------------------------------------------------------------------- shapes
# Each inside-test takes coordinates (u, v) in the shape's own frame, where the whole shape
# fits in the unit disk, and returns a boolean array. Areas differ by at most about 2x (0.9 to
# 2.0 in unit-frame units) while the drawn scale varies by 1.5x, so size is a weak cue at best.


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 0.80**2


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 0.68) & (np.abs(v) <= 0.68)


def _regular_polygon_fold(u: np.ndarray, v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold the plane into one sector of an n-fold shape: returns radius and angle in [0, pi/n]."""
    rho = np.hypot(u, v)
    sector = 2 * math.pi / n
    phi = np.mod(np.arctan2(v, u), sector)
    return rho, np.abs(phi - sector / 2)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral, circumradius 1: inside when the distance to each edge's normal is <= 1/2.
    rho, phi = _regular_polygon_fold(u, v, 3)
    return rho * np.cos(phi) <= 0.5


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Five points; in a folded sector (tip on the axis at angle pi/5 from the fold line) the
    # edge runs from the tip (1, 0) to the inner vertex at radius 0.42 and angle pi/5.
    rho, phi = _regular_polygon_fold(u, v, 5)
    half = math.pi / 5
    x, y = rho * np.cos(half - phi), rho * np.sin(half - phi)  # tip direction is +x
    ix, iy = 0.42 * math.cos(half), 0.42 * math.sin(half)
    # Points on the origin's side of the line tip -> inner vertex are inside.
    return (x - 1.0) * iy - y * (ix - 1.0) <= 0


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.26) & (av <= 0.92)) | ((av <= 0.26) & (au <= 0.92))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 0.92**2) & (r2 >= 0.52**2)


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= 0.90**2) & ((u - 0.42) ** 2 + v * v >= 0.74**2)


def _hourglass(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Two triangles meeting at a narrow waist (a bow tie): as wide at its ends as it is long,
    # so it is not mistaken for an elongated distractor.
    au = np.abs(u)
    return (au <= 0.62) & (np.abs(v) <= 0.12 + 0.95 * au)


def _arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    shaft = (u >= -0.92) & (u <= 0.05) & (np.abs(v) <= 0.2)
    head = (u >= 0.0) & (u <= 0.92) & (np.abs(v) <= 0.62 * (0.92 - u) / 0.92)
    return shaft | head


def _l_shape(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Two equal arms (so a mirror image is a rotation of the same shape), centred on the origin.
    inside_box = (u >= -0.66) & (u <= 0.66) & (v >= -0.66) & (v <= 0.66)
    return inside_box & ((u <= -0.16) | (v >= 0.16))


_SHAPE_TESTS: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    _circle,
    _square,
    _triangle,
    _star,
    _cross,
    _ring,
    _crescent,
    _hourglass,
    _arrow,
    _l_shape,
)


def _ellipse(a: float, b: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Distractor: an ellipse with semi-axes a (along u) and b (along v), in the unit frame."""
    return lambda u, v: (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _bar(half_length: float, half_width: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Distractor: a thin rectangle (a thick line segment), in the unit frame."""
    return lambda u, v: (np.abs(u) <= half_length) & (np.abs(v) <= half_width)


# --------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class _Placed:
    inside: Callable[[np.ndarray, np.ndarray], np.ndarray]
    cx: float
    cy: float
    radius: float  # pixels per unit of the shape frame (the shape fits in this circle)
    angle: float


@dataclass(frozen=True)
class RenderedScene:
    """One scene before normalisation (what :meth:`ShapesScenes.render` returns).

    Attributes:
        image: uint8 RGB image (size, size, 3).
        label: the target's class index into :data:`SHAPE_CLASSES`.
        mask: bool (size, size), the pixels the target contributed to (coverage > 0).
        coverage: float32 (size, size) in [0, 1], the fraction of each pixel the target covers.
    """

    image: np.ndarray
    label: int
    mask: np.ndarray
    coverage: np.ndarray


@functools.lru_cache(maxsize=8)
def _upsample_matrix(size: int, coarse: int) -> np.ndarray:
    """Bilinear interpolation weights (size, coarse) from a coarse grid spanning the image."""
    pos = (np.arange(size) + 0.5) / size * (coarse - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, coarse - 2)
    frac = pos - lo
    mat = np.zeros((size, coarse), dtype=np.float32)
    mat[np.arange(size), lo] = 1.0 - frac
    mat[np.arange(size), lo + 1] = frac
    return mat


@functools.lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    centres = np.arange(size, dtype=np.float32) + 0.5
    return centres[None, :], centres[:, None]  # x (1, size), y (size, 1)


def _coverage(obj: _Placed, size: int) -> tuple[slice, slice, np.ndarray]:
    """Supersampled coverage of one object, restricted to its bounding box (for speed)."""
    x0 = max(int(math.floor(obj.cx - obj.radius)) - 1, 0)
    x1 = min(int(math.ceil(obj.cx + obj.radius)) + 1, size)
    y0 = max(int(math.floor(obj.cy - obj.radius)) - 1, 0)
    y1 = min(int(math.ceil(obj.cy + obj.radius)) + 1, size)
    s = _SUPERSAMPLE
    offsets = (np.arange(s, dtype=np.float32) + 0.5) / s
    xs = (np.arange(x0, x1, dtype=np.float32)[:, None] + offsets[None, :]).reshape(1, -1) - obj.cx
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + offsets[None, :]).reshape(-1, 1) - obj.cy
    cos, sin = math.cos(obj.angle), math.sin(obj.angle)
    u = (xs * cos + ys * sin) / obj.radius
    v = (ys * cos - xs * sin) / obj.radius
    inside = obj.inside(u, v).astype(np.float32)
    cov = inside.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    return slice(y0, y1), slice(x0, x1), cov


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour at least ``contrast`` away from ``under`` (the background colour there)."""
    candidates = rng.random((12, 3), dtype=np.float32)
    distance = np.linalg.norm(candidates - under[None, :], axis=1)
    ok = np.flatnonzero(distance >= _DIFFICULTY.contrast)
    return candidates[ok[0]] if ok.size else candidates[int(np.argmax(distance))]


def _paint(image: np.ndarray, obj: _Placed, rng: np.random.Generator, draw: bool = True) -> tuple:
    rows, cols, cov = _coverage(obj, image.shape[0])
    region = image[rows, cols]
    weight = cov.sum()
    under = (region * cov[..., None]).sum(axis=(0, 1)) / max(weight, 1e-6)
    colour = _pick_colour(rng, under)
    if draw:
        alpha = cov[..., None]
        image[rows, cols] = region * (1.0 - alpha) + colour * alpha
    return rows, cols, cov


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    # Smooth noise: a random base colour with smooth variations per channel.
    coarse = int(rng.integers(3, 7))
    base = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    spread = _DIFFICULTY.colour_variation
    grid = np.clip(base + rng.uniform(-spread, spread, size=(coarse, coarse, 3)), 0.0, 1.0).astype(np.float32)
    mat = _upsample_matrix(size, coarse)
    rows = np.tensordot(mat, grid, axes=(1, 0))  # (size, coarse, 3)
    image = np.tensordot(rows, mat, axes=(1, 1)).transpose(0, 2, 1)  # (size, size, 3)
    # Stripes in a random direction and colour, so the background has edges of its own.
    x, y = _pixel_grid(size)
    theta = rng.uniform(0.0, math.pi)
    period = rng.uniform(0.1, 0.3) * size
    phase = rng.uniform(0.0, 2 * math.pi)
    strength = rng.uniform(*_DIFFICULTY.stripe_strength)
    wave = np.sin((x * math.cos(theta) + y * math.sin(theta)) * (2 * math.pi / period) + phase)
    alpha = (strength * 0.5 * (wave + 1.0))[..., None]
    stripe_colour = rng.random(3, dtype=np.float32)
    return (image * (1.0 - alpha) + stripe_colour * alpha).astype(np.float32)


def _distractor(rng: np.random.Generator, size: int) -> tuple[Callable, float]:
    """A non-class shape and its bounding radius in pixels."""
    radius = rng.uniform(*_DIFFICULTY.distractor_radius) * size
    if rng.random() < 0.5:
        aspect = rng.uniform(2.0, 3.5)  # clearly not a circle
        return _ellipse(1.0, 1.0 / aspect), radius
    # 1.6 to 3.6 px wide, and at least 3 times longer than wide: a line, never a square.
    half_width = min(rng.uniform(0.8, 1.8) / radius, 1.0 / 3.0)
    return _bar(1.0, half_width), radius


def _free_spot(
    rng: np.random.Generator, size: int, radius: float, taken: list[tuple[float, float, float]]
) -> tuple[float, float] | None:
    """A distractor centre clearing all ``taken`` circles by 2 px (None if 20 tries fail).

    Distractors may be cut by the image border: only the target must be fully visible.
    """
    for _ in range(20):
        cx, cy = rng.uniform(0.0, float(size)), rng.uniform(0.0, float(size))
        if all(math.hypot(cx - x, cy - y) >= radius + r + 2.0 for x, y, r in taken):
            return cx, cy
    return None


def _render_scene(
    split_id: int, seed: int, index: int, size: int, distractors: tuple[int, int], draw_target: bool = True
) -> RenderedScene:
    """Render scene ``index``; every random draw happens whether or not the target is drawn."""
    rng = np.random.default_rng([seed, split_id, index])
    label = index % len(SHAPE_CLASSES)
    image = _background(rng, size)

    t_radius = rng.uniform(*_DIFFICULTY.target_radius) * size
    # Fully inside the image: the shape fits in its bounding circle, kept 1 px from the border.
    t_x, t_y = rng.uniform(t_radius + 1.0, size - 1.0 - t_radius, size=2)
    target = _Placed(_SHAPE_TESTS[label], float(t_x), float(t_y), t_radius, rng.uniform(0, 2 * math.pi))
    taken = [(target.cx, target.cy, target.radius)]

    count = int(rng.integers(distractors[0], distractors[1] + 1))
    for _ in range(count):
        inside, radius = _distractor(rng, size)
        angle = rng.uniform(0, 2 * math.pi)
        centre = _free_spot(rng, size, radius, taken)
        if centre is None:  # crowded scene: fewer distractors rather than overlapping ones
            continue
        taken.append((centre[0], centre[1], radius))
        _paint(image, _Placed(inside, centre[0], centre[1], radius, angle), rng)

    # The target goes last so nothing occludes it.
    rows, cols, cov = _paint(image, target, rng, draw=draw_target)
    coverage = np.zeros((size, size), dtype=np.float32)
    coverage[rows, cols] = cov

    image += _DIFFICULTY.noise * rng.standard_normal(size=image.shape, dtype=np.float32)
    image8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return RenderedScene(image=image8, label=label, mask=coverage > 0, coverage=coverage)


# --------------------------------------------------------------------------- dataset
class ShapesScenes(Dataset):
    """The embedded benchmark: shape classification with a ground-truth mask per image.

    Each item is ``(image, label, mask)``: ``image`` float32 (3, size, size) normalised with
    :attr:`mean`/:attr:`std`; ``label`` an int in ``[0, 10)`` (``class_names[label]``);
    ``mask`` bool (size, size), the target's pixels. Labels cycle through the classes
    (``label = index % 10``), so any 10 consecutive indices hold every class once.

    Args:
        split: ``"train"`` or ``"test"``; the two splits draw from disjoint random streams.
        n: number of scenes (default 6000 for train, 2000 for test).
        size: image side in pixels (>= 32); object sizes scale with it.
        seed: base seed; the scene at index i depends only on (split, seed, i).
        distractors: inclusive (min, max) number of distractor objects per scene.

    Raises:
        ValueError: an argument is out of range (the message says which).
        TypeError: an argument has the wrong type.

    Example:
        >>> data = ShapesScenes("test", n=100)
        >>> image, label, mask = data[0]
        >>> image.shape, data.class_names[label], mask.dtype
        (torch.Size([3, 64, 64]), 'circle', torch.bool)
    """

    mean: tuple[float, float, float] = SHAPES_MEAN
    std: tuple[float, float, float] = SHAPES_STD
    class_names: tuple[str, ...] = SHAPE_CLASSES
    num_classes: int = len(SHAPE_CLASSES)

    def __init__(
        self,
        split: str = "train",
        n: int | None = None,
        size: int = 64,
        seed: int = 0,
        distractors: tuple[int, int] = (1, 3),
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        n = _DEFAULT_N[split] if n is None else n
        for name, value in (("n", n), ("size", size), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if n < 1:
            raise ValueError(f"n must be a positive number of scenes, got {n}")
        if size < _MIN_SIZE:
            raise ValueError(f"size must be at least {_MIN_SIZE} pixels so the shapes stay recognisable, got {size}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        if (
            not isinstance(distractors, (tuple, list))
            or len(distractors) != 2
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in distractors)
            or not 0 <= distractors[0] <= distractors[1] <= 6
        ):
            raise ValueError(f"distractors must be (min, max) ints with 0 <= min <= max <= 6, got {distractors!r}")
        self.split = split
        self.n = int(n)
        self.size = int(size)
        self.seed = int(seed)
        self.distractors = (int(distractors[0]), int(distractors[1]))

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (
            f"ShapesScenes(split={self.split!r}, n={self.n}, size={self.size}, seed={self.seed}, "
            f"distractors={self.distractors})"
        )

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} is out of range for a dataset of {self.n} scenes")
        return int(index)

    def render(self, index: int, *, draw_target: bool = True) -> RenderedScene:
        """Render scene ``index`` without normalisation (uint8 RGB, label, mask, coverage).

        Args:
            index: scene index (negative counts from the end).
            draw_target: ``False`` renders the identical scene without the target (every
                random draw is the same), which is how the masks are verified.

        Returns:
            A :class:`RenderedScene`.
        """
        index = self._check_index(index)
        return _render_scene(_SPLITS[self.split], self.seed, index, self.size, self.distractors, draw_target)

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor]:
        """``(image, label, mask)`` for scene ``index``: normalised float32, int, bool."""
        scene = self.render(index)
        image = self.normalize(torch.from_numpy(scene.image).permute(2, 0, 1))
        return image, scene.label, torch.from_numpy(scene.mask)

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """Materialise the whole split at once (about 1 ms per scene).

        Returns:
            ``(images, labels, masks)``: float32 (N, 3, size, size) normalised, int64 (N,),
            bool (N, size, size); identical to stacking ``self[i]`` for every i.
        """
        raw = np.empty((self.n, self.size, self.size, 3), dtype=np.uint8)
        masks = np.empty((self.n, self.size, self.size), dtype=bool)
        labels = np.empty(self.n, dtype=np.int64)
        split_id = _SPLITS[self.split]
        for i in range(self.n):
            scene = _render_scene(split_id, self.seed, i, self.size, self.distractors)
            raw[i], masks[i], labels[i] = scene.image, scene.mask, scene.label
        images = self.normalize(torch.from_numpy(raw).permute(0, 3, 1, 2))
        return images.contiguous(), torch.from_numpy(labels), torch.from_numpy(masks)

    @classmethod
    def normalize(cls, images: Tensor) -> Tensor:
        """uint8 RGB (..., 3, H, W) in [0, 255], or float in [0, 1], to the model's input space."""
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        mean = torch.tensor(cls.mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
        std = torch.tensor(cls.std, dtype=images.dtype, device=images.device).view(3, 1, 1)
        return (images - mean) / std

    @classmethod
    def denormalize(cls, images: Tensor) -> Tensor:
        """Undo :meth:`normalize`: normalised (..., 3, H, W) back to RGB in [0, 1] (unclipped)."""
        if not isinstance(images, Tensor):
            raise TypeError(f"denormalize expects a torch.Tensor (..., 3, H, W), got {type(images).__name__}")
        if images.ndim < 3 or images.shape[-3] != 3:
            raise ValueError(f"denormalize expects (..., 3, H, W) images, got shape {tuple(images.shape)}")
        mean = torch.tensor(cls.mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
        std = torch.tensor(cls.std, dtype=images.dtype, device=images.device).view(3, 1, 1)
        return images * std + mean
