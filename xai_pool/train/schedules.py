"""Learning-rate schedules for stream training, as step-indexed multiplicative factors.

Both schedules are small callable objects used as ``LambdaLR`` lambdas and stepped once
per optimizer step, so a run resumed in the middle of an epoch continues with exactly the
learning rate it would have had. They are plain objects (no closures) so the scheduler's
``state_dict`` holds only numbers and loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["StepSchedule", "CosineSchedule", "build_scheduler", "SCHEDULES"]

SCHEDULES = ("step", "cosine")


def _warmup_factor(step: int, warmup_steps: int) -> float | None:
    """Linear warm-up from ``1/warmup_steps`` to 1; None once the warm-up is over."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return None


class StepSchedule:
    """The paper's schedule: multiply the rate by ``gamma`` every ``step_epochs`` epochs.

    Args:
        steps_per_epoch: optimizer steps in one epoch.
        step_epochs: epochs between two decays (30 in the paper).
        gamma: decay factor (0.1 in the paper).
        warmup_steps: optional linear warm-up at the start (0 in the paper).
    """

    def __init__(self, steps_per_epoch: int, step_epochs: int = 30, gamma: float = 0.1, warmup_steps: int = 0) -> None:
        self.steps_per_epoch = int(steps_per_epoch)
        self.step_epochs = int(step_epochs)
        self.gamma = float(gamma)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: int) -> float:
        """The learning-rate factor of optimizer step ``step`` (0-based)."""
        warm = _warmup_factor(step, self.warmup_steps)
        if warm is not None:
            return warm
        epoch = step // self.steps_per_epoch
        return self.gamma ** (epoch // self.step_epochs)


class CosineSchedule:
    """Linear warm-up, then a half cosine from the base rate down to ``min_factor`` times it.

    Args:
        total_steps: optimizer steps of the whole run.
        warmup_steps: steps of linear warm-up (counted inside ``total_steps``).
        min_factor: final rate as a fraction of the base rate.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0) -> None:
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_factor = float(min_factor)

    def __call__(self, step: int) -> float:
        """The learning-rate factor of optimizer step ``step`` (0-based)."""
        warm = _warmup_factor(step, self.warmup_steps)
        if warm is not None:
            return warm
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: Optimizer,
    schedule: str,
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    step_epochs: int = 30,
    gamma: float = 0.1,
    min_factor: float = 0.0,
) -> LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step.

    Args:
        optimizer: the optimizer whose rates are scheduled.
        schedule: ``"step"`` (paper default) or ``"cosine"``.
        epochs: total epochs of the run (used by the cosine schedule).
        steps_per_epoch: optimizer steps per epoch.
        warmup_epochs: linear warm-up length in epochs (may be fractional).
        step_epochs: epochs between decays of the step schedule.
        gamma: decay factor of the step schedule.
        min_factor: final fraction of the base rate for the cosine schedule.

    Returns:
        The scheduler.

    Raises:
        ValueError: unknown schedule name or a non-positive length.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if steps_per_epoch < 1:
        raise ValueError(f"the training data gives {steps_per_epoch} steps per epoch; it needs at least one batch")
    if step_epochs < 1:
        raise ValueError(f"lr_step_epochs must be a positive number of epochs, got {step_epochs}")
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if schedule == "step":
        factor = StepSchedule(steps_per_epoch, step_epochs, gamma, warmup_steps)
    else:
        factor = CosineSchedule(epochs * steps_per_epoch, warmup_steps, min_factor)
    return LambdaLR(optimizer, factor)
