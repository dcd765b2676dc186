"""Training the CA-Stream on a frozen backbone: :func:`train_stream` and its pieces.

- :mod:`.trainer`: :func:`train_stream` (the loop, validation, checkpoints) and
  :func:`evaluate_stream` (top-1 of both poolings);
- :mod:`.steps`: one training step and one evaluation pass (also used by the benchmark);
- :mod:`.schedules`: the paper's step schedule and a cosine schedule with warm-up;
- :mod:`.state`: resumable training checkpoints (``train_state.pt``);
- :mod:`.data`: seeded, shardable, resumable data loading;
- :mod:`.distributed`: torchrun detection, process group, DDP around the stream only.
"""

from __future__ import annotations

from .schedules import CosineSchedule, StepSchedule, build_scheduler
from .state import load_train_state
from .steps import Objective, train_step
from .trainer import NonFiniteLossError, RunExistsError, evaluate_stream, init_stream, train_stream

__all__ = [
    "train_stream",
    "evaluate_stream",
    "NonFiniteLossError",
    "RunExistsError",
    "init_stream",
    "train_step",
    "Objective",
    "load_train_state",
    "build_scheduler",
    "StepSchedule",
    "CosineSchedule",
]
