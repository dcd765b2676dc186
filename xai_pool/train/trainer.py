"""The frozen-backbone trainer of the CA-Stream (paper section 3.3 and appendix B).

Only the stream's parameters are optimised. ``CAModel.train()`` keeps the backbone in eval
mode (BatchNorm statistics, dropout and stochastic depth stay frozen) and, with its
parameters frozen, the backbone builds no autograd graph: a step costs one forward pass of
the backbone plus the small stream. Checkpoints let a run killed at any step continue to
exactly the weights an uninterrupted run reaches.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..atomic import atomic_write_text, make_staging_dir, remove_stale_temp_files, replace_directory
from ..checkpoint import apply_stream_payload, atomic_torch_save, check_finite_state, stream_payload
from ..model import CAModel
from ..runtime import eval_mode, model_device, preserved_training, resolve_device
from ..stream import CAStream
from ..validation import check_choice, check_float, check_int, check_output_dir, positive_float
from . import distributed as dist_utils
from .data import prepare_eval_loader, prepare_train_loader
from .schedules import SCHEDULES, build_scheduler
from .state import capture_rng_state, check_resume_config, load_train_state, restore_rng_state, save_train_state
from .steps import EVAL_FIELDS, Objective, evaluate_sums, split_batch, train_step

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["train_stream", "evaluate_stream", "INITS", "RUN_FILES", "NonFiniteLossError", "RunExistsError"]

logger = logging.getLogger("xai_pool.train")

INITS = ("xavier", "identity", "keep")
#: Files written into ``out_dir``.
RUN_FILES = ("best.pt", "last.pt", "train_state.pt", "history.jsonl", "run.json")
_AMP_CHOICES = (None, True, False, "bf16", "fp16")
# On accelerators the loss is checked for NaN/inf every this many steps (each check waits for
# the device); on these devices, where operations are synchronous anyway, after every step.
_FINITE_CHECK_EVERY = 10
_SYNCHRONOUS_DEVICES = ("cpu",)


class NonFiniteLossError(RuntimeError):
    """The training (or validation) loss or the weights became NaN or infinite.

    Nothing after the last finite checkpoint was written. ``cause`` is ``"diverged"`` (finite
    images: the learning rate or mixed precision), ``"images"`` (that batch held NaN/inf) or
    ``"validation"`` (a non-finite validation loss).
    """

    def __init__(self, message: str, cause: str = "diverged") -> None:
        super().__init__(message)
        self.cause = cause


class RunExistsError(ValueError):
    """``out_dir`` already holds a training run, and neither ``resume`` nor ``overwrite`` was given."""


# ----------------------------------------------------------------------------- checks
def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    check_int(value, name, minimum=minimum, allow_none=allow_none)


def _check_args(
    model: Any,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    schedule: str,
    warmup_epochs: float,
    label_smoothing: float,
    label_free: bool,
    init: str,
    out_dir: Any,
    checkpoint_every_steps: int | None,
    resume: bool,
    max_steps: int | None,
    amp: Any,
    seed: int,
) -> None:
    if not isinstance(model, CAModel):
        raise TypeError(f"train_stream expects a CAModel (from xai_pool.attach_stream), got {type(model).__name__}")
    _check_int("epochs", epochs, 1)
    _check_int("seed", seed, 0)
    _check_int("checkpoint_every_steps", checkpoint_every_steps, 1, allow_none=True)
    _check_int("max_steps", max_steps, 1, allow_none=True)
    positive_float(lr, "lr")
    check_float(momentum, "momentum", minimum=0.0, maximum=1.0, max_inclusive=False)
    check_float(weight_decay, "weight_decay", minimum=0.0)
    check_choice(schedule, "schedule", SCHEDULES)
    check_float(warmup_epochs, "warmup_epochs", minimum=0.0, maximum=epochs, hint=f"it cannot exceed epochs={epochs}")
    check_float(label_smoothing, "label_smoothing", minimum=0.0, maximum=1.0, max_inclusive=False)
    if label_free and label_smoothing:
        raise ValueError(
            "label_smoothing applies to labels; label_free=True distils the GAP probabilities, "
            "which are already soft: leave label_smoothing at 0"
        )
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir, the folder holding train_state.pt")
    if amp not in _AMP_CHOICES:
        raise ValueError(f"amp must be None (auto), True, False, 'bf16' or 'fp16', got {amp!r}")


def _check_frozen(model: CAModel) -> list[torch.nn.Parameter]:
    """The stream's trainable parameters, after checking the backbone has none."""
    trainable = [name for name, p in model.backbone.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(
            f"{len(trainable)} backbone parameters require grad (e.g. {trainable[:3]}); the backbone "
            "and its classifier must stay frozen: do not call requires_grad_(True) on model.backbone"
        )
    params = [p for p in model.stream.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the stream has no parameter with requires_grad=True; nothing to train")
    return params


def _amp_dtype(amp: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where supported, fp16 (with a GradScaler) otherwise."""
    if amp is None:
        amp = device.type == "cuda"
    if amp is False:
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or device.type != "cuda" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


# ----------------------------------------------------------------------------- init
def init_stream(model: CAModel, init: str, seed: int) -> None:
    """Re-initialise ``model.stream`` reproducibly from ``seed``.

    ``"xavier"`` is the authors' initialisation (xavier-uniform Linear weights, PyTorch's
    default uniform biases, the initial query drawn from N(1, 1)); ``"identity"`` is the same, then the last block's
    Linear (and its value projection, for 'projca' streams) becomes the identity, so that an
    untrained stream with near-uniform attention starts close to GAP's predictions;
    ``"keep"`` leaves the current weights (to fine-tune a loaded stream).

    Raises:
        ValueError: ``"identity"`` on a stream whose last Linear is not square.
    """
    if init == "keep":
        return
    # A fresh stream built under the seed: the stream's own initialisation code, and the
    # caller's global random state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = CAStream(model.stream.config)
    if init == "identity":
        block = fresh.blocks[-1]
        if block.dim != block.out_dim:
            raise ValueError(
                f"init='identity' needs the last block's Linear to be square, but it maps {block.dim} -> "
                f"{block.out_dim} channels; use init='xavier' for this model"
            )
        with torch.no_grad():
            for linear in (block.proj, block.value):
                if linear is not None:
                    linear.weight.copy_(torch.eye(block.dim))
                    linear.bias.zero_()
    model.stream.load_state_dict(fresh.state_dict())


# ----------------------------------------------------------------------------- public API
def train_stream(
    model: CAModel,
    train_loader: Iterable,
    *,
    epochs: int,
    val_loader: Iterable | None = None,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    schedule: str = "step",
    lr_step_epochs: int = 30,
    lr_gamma: float = 0.1,
    warmup_epochs: float = 0.0,
    label_smoothing: float = 0.0,
    label_free: bool = False,
    init: str = "xavier",
    out_dir: str | os.PathLike | None = None,
    checkpoint_every_steps: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    max_steps: int | None = None,
    device: str | torch.device | None = None,
    amp: bool | str | None = None,
    seed: int = 0,
    progress: bool | None = None,
    metadata: dict[str, Any] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train the CA-Stream of ``model`` with its backbone and classifier frozen.

    Defaults follow the paper (appendix B): SGD with momentum 0.9 and weight decay 1e-4,
    lr 0.1 divided by 10 every 30 epochs (the learning rate is for the *global* batch: scale
    it if yours is not 256). Run the same code under ``torchrun --nproc_per_node=N``: the
    environment is detected, the data sharded, only the stream wrapped in
    DistributedDataParallel, and rank 0 alone logs and writes files.

    Args:
        model: a :class:`~xai_pool.CAModel` from :func:`~xai_pool.attach_stream`. It is moved
            to ``device``; its mode and pooling are restored when training ends.
        train_loader: a ``DataLoader`` of ``(images, labels)`` (``images`` alone is enough when
            label-free; extra items are ignored). Its dataset, batch size (per process),
            workers, collate function and shuffle flag are kept, and its sampler replaced by a
            seeded, shardable, resumable one. Other iterables are used as given.
        epochs: number of epochs.
        val_loader: evaluated after every epoch (loss and top-1 of both poolings).
        lr: base learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (applied to every stream parameter, as in the paper).
        schedule: ``"step"`` (divide by ``1/lr_gamma`` every ``lr_step_epochs``) or ``"cosine"``.
        lr_step_epochs: epochs between decays of the step schedule.
        lr_gamma: decay factor of the step schedule.
        warmup_epochs: linear warm-up (both schedules), may be fractional.
        label_smoothing: passed to ``CrossEntropyLoss(label_smoothing=...)``.
        label_free: train without labels by distilling the frozen GAP prediction: the loss is
            ``KL(softmax(gap) || softmax(ca))``.
        init: ``"xavier"`` (authors), ``"identity"`` (last Linear = identity) or ``"keep"``.
            Ignored when a run is resumed.
        out_dir: folder for ``best.pt``/``last.pt`` (stream checkpoints for
            :func:`~xai_pool.load_stream`), ``train_state.pt`` (for resuming) and
            ``history.jsonl`` (one JSON object per epoch). None writes nothing.
        checkpoint_every_steps: also write ``train_state.pt`` every N optimizer steps.
        resume: continue from ``out_dir/train_state.pt`` (a new run starts, with a warning,
            if there is none yet, so the same command can be repeated after a crash).
        overwrite: allow a new run in an ``out_dir`` that holds one. The old run stays
            complete until the new one has written its first checkpoint: the new run is
            trained in a temporary sibling folder, which then replaces ``out_dir`` (renames;
            a kill at any point leaves the old run or the new one, see ``docs/training.md``).
            ``out_dir`` must then hold only run files. With ``resume=True``, ``overwrite``
            only matters when there is no ``train_state.pt`` to resume (the CLI refuses the
            two flags together).
        max_steps: stop (after checkpointing) once this many optimizer steps are done in
            total, to split a run into time-boxed jobs; ``resume=True`` continues it.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when available (the local
            rank's GPU under torchrun), else CPU.
        amp: mixed precision: None = on for CUDA (bf16 if supported, else fp16 with a
            GradScaler), True, False, ``"bf16"`` or ``"fp16"``.
        seed: seeds the stream initialisation, the data order and each sample's augmentation.
        progress: tqdm progress bars; None = only when stderr is a terminal.
        on_step: called after every optimizer step with a dict (``epoch``, ``step``,
            ``global_step``, ``loss``, ``lr``); an exception raised there stops training.
        metadata: JSON-serialisable facts about the run (the commands record the model profile
            and the preprocessing); written to ``out_dir/run.json`` with every training state,
            with ``epochs_done``, ``epochs`` and ``finished`` (false for a run killed or stopped
            by ``max_steps`` before its last epoch).

    Returns:
        The history: one dict per finished epoch with ``epoch`` (1-based), ``train_loss``,
        ``train_acc`` (against the labels, or the GAP prediction when label-free),
        ``val_loss``, ``val_acc_ca``, ``val_acc_gap``, ``val_agreement`` (fraction of CA
        predictions equal to GAP's), ``lr`` (of the epoch's last step), ``time`` (seconds),
        ``steps`` and ``skipped`` (unreadable images dropped). Validation values are None
        without a ``val_loader`` (accuracies also when its batches have no labels).

    Raises:
        TypeError: ``model`` is not a CAModel, or an argument has the wrong type.
        ValueError: an argument is out of range, the backbone is not frozen, ``out_dir``
            already holds a run (without ``resume``/``overwrite``), the checkpoint to
            resume is truncated, foreign, non-finite, or from another model or other
            settings, or every training image of an epoch was unreadable.
        NonFiniteLossError: the loss became NaN or infinite (a RuntimeError naming the
            epoch and step; the last finite checkpoint is kept, nothing later is written).
        OSError: ``out_dir`` cannot be written (checked before training starts).

    Example:
        >>> ca = xai_pool.attach_stream(resnet50)                          # doctest: +SKIP
        >>> history = xai_pool.train_stream(ca, train_loader, epochs=90,   # doctest: +SKIP
        ...                                 val_loader=val_loader, out_dir="runs/r50")
    """
    _check_args(
        model,
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        label_free=label_free,
        init=init,
        out_dir=out_dir,
        checkpoint_every_steps=checkpoint_every_steps,
        resume=resume,
        max_steps=max_steps,
        amp=amp,
        seed=seed,
    )
    _, _, local_rank = dist_utils.env_world()
    resolved = resolve_device(device, local_rank)
    info = dist_utils.setup(resolved)
    try:
        run = _Run(
            model,
            train_loader,
            val_loader,
            info=info,
            device=resolved,
            epochs=epochs,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            schedule=schedule,
            lr_step_epochs=lr_step_epochs,
            lr_gamma=lr_gamma,
            warmup_epochs=warmup_epochs,
            label_smoothing=label_smoothing,
            label_free=label_free,
            init=init,
            out_dir=out_dir,
            checkpoint_every_steps=checkpoint_every_steps,
            resume=resume,
            overwrite=overwrite,
            max_steps=max_steps,
            amp=amp,
            seed=seed,
            progress=progress,
            on_step=on_step,
            metadata=metadata,
        )
        return run.run()
    finally:
        dist_utils.cleanup(info)


def evaluate_stream(
    model: CAModel,
    loader: Iterable,
    *,
    device: str | torch.device | None = None,
    amp: bool | str | None = None,
    label_free: bool = False,
) -> dict[str, float | None]:
    """Top-1 accuracy of both poolings (the paper's Acc column) and the loss on ``loader``.

    Args:
        model: a CAModel; evaluated in eval mode (its mode is restored afterwards).
        loader: batches of ``(images, labels)`` (or images alone: then only the agreement).
        device: as in :func:`train_stream`; default the model's device.
        amp: as in :func:`train_stream`.
        label_free: report the label-free loss (KL to GAP) instead of the cross-entropy.

    Returns:
        ``{"loss", "acc_ca", "acc_gap", "agreement", "count", "skipped"}`` (None where undefined).
    """
    if not isinstance(model, CAModel):
        raise TypeError(f"evaluate_stream expects a CAModel, got {type(model).__name__}")
    if device is None:
        device = model_device(model.stream, torch.device("cpu"))
    resolved = resolve_device(device)
    model.to(resolved)
    batches, counts, _ = prepare_eval_loader(loader, rank=0, world_size=1)
    with eval_mode(model):
        sums = evaluate_sums(
            model,
            batches,
            Objective(label_free=label_free),
            device=resolved,
            amp_dtype=_amp_dtype(amp, resolved),
            counts=counts,
        )
    metrics = _eval_metrics(sums.cpu(), label_free)
    return {
        "loss": metrics["val_loss"],
        "acc_ca": metrics["val_acc_ca"],
        "acc_gap": metrics["val_acc_gap"],
        "agreement": metrics["val_agreement"],
        "count": int(sums[1]),
        "skipped": int(sums[6]),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def _eval_metrics(sums: Tensor, label_free: bool) -> dict[str, float | None]:
    s = dict(zip(EVAL_FIELDS, sums.tolist(), strict=True))
    return {
        "val_loss": _ratio(s["loss"], s["count"] if label_free else s["labeled"]),
        "val_acc_ca": _ratio(s["correct_ca"], s["labeled"]),
        "val_acc_gap": _ratio(s["correct_gap"], s["labeled"]),
        "val_agreement": _ratio(s["agree"], s["count"]),
    }


def _score(record: dict[str, Any]) -> float:
    """Higher is better: CA accuracy, else minus the validation loss, else minus the training loss."""
    if record.get("val_acc_ca") is not None:
        return record["val_acc_ca"]
    if record.get("val_loss") is not None:
        return -record["val_loss"]
    return -record["train_loss"] if record.get("train_loss") is not None else -math.inf


class _FiniteWatch:
    """Notices the first non-finite loss or weight without waiting for the device at every step.

    :meth:`record` only queues tensor operations: whether every step so far had a finite loss
    and finite weights after its update, how many good steps came before the first bad one,
    that step's loss, and whether its images and its updated weights were finite.
    :meth:`check` reads them (one synchronisation) and, with several processes, takes the
    earliest bad step over all of them, so every process raises at the same check.
    """

    def __init__(self, device: torch.device, global_step: int) -> None:
        self.device = device
        self._reset(global_step)

    def _reset(self, global_step: int) -> None:
        self.checked_at = global_step
        self.clean = torch.ones((), dtype=torch.bool, device=self.device)
        self.finite_steps = torch.zeros((), dtype=torch.long, device=self.device)
        self.bad_loss = torch.zeros((), dtype=torch.float32, device=self.device)
        self.images_finite = torch.ones((), dtype=torch.bool, device=self.device)
        self.weights_finite = torch.ones((), dtype=torch.bool, device=self.device)

    def record(self, loss: Tensor, images: Tensor, params: list[Tensor]) -> None:
        weights_ok = torch.stack([torch.isfinite(p).all() for p in params]).all()
        ok = torch.isfinite(loss) & weights_ok
        first_bad = self.clean & ~ok
        self.bad_loss = torch.where(first_bad, loss.detach().float(), self.bad_loss)
        self.images_finite = torch.where(first_bad, torch.isfinite(images).all(), self.images_finite)
        self.weights_finite = torch.where(first_bad, weights_ok, self.weights_finite)
        self.clean = self.clean & ok
        self.finite_steps += self.clean.long()

    def record_empty(self) -> None:
        """A step without a loss (a batch of unreadable images): it still counts as a step."""
        self.finite_steps += self.clean.long()

    def check(self, global_step: int, info: Any) -> tuple[int, str, bool, bool] | None:
        """``(global step, its loss as text, images finite, loss finite)`` of the first bad step, or None."""
        local_step = self.checked_at + int(self.finite_steps) + 1 if not bool(self.clean) else math.inf
        bad_step, images_finite = local_step, bool(self.images_finite)
        if info.enabled:
            import torch.distributed as dist

            # The earliest bad step over all processes, and whether any process's images were bad.
            earliest = torch.tensor([local_step], dtype=torch.float64, device=self.device)
            images_bad = torch.tensor([float(not images_finite)], dtype=torch.float64, device=self.device)
            dist.all_reduce(earliest, op=dist.ReduceOp.MIN)
            dist.all_reduce(images_bad, op=dist.ReduceOp.MAX)
            bad_step, images_finite = float(earliest), not bool(images_bad > 0)
        if math.isinf(bad_step):
            self._reset(global_step)
            return None
        if bad_step == local_step:
            loss = float(self.bad_loss)
            return int(bad_step), f"{loss:.6g}", images_finite, math.isfinite(loss)
        return int(bad_step), "NaN or inf", images_finite, False


# Training sums of the current epoch, in this order (added across processes as one tensor).
_TRAIN_FIELDS = ("loss", "correct", "count", "skipped", "seconds")


class _Run:
    """One call of :func:`train_stream`: the loaders, optimizer, schedule and loop."""

    def __init__(
        self,
        model: CAModel,
        train_loader: Iterable,
        val_loader: Iterable | None,
        *,
        info: dist_utils.DistInfo,
        device: torch.device,
        epochs: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        schedule: str,
        lr_step_epochs: int,
        lr_gamma: float,
        warmup_epochs: float,
        label_smoothing: float,
        label_free: bool,
        init: str,
        out_dir: str | os.PathLike | None,
        checkpoint_every_steps: int | None,
        resume: bool,
        overwrite: bool,
        max_steps: int | None,
        amp: bool | str | None,
        seed: int,
        progress: bool | None,
        on_step: Callable[[dict[str, Any]], None] | None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.info, self.device = model, info, device
        self.metadata = metadata
        self.epochs, self.max_steps, self.on_step = epochs, max_steps, on_step
        self.checkpoint_every = checkpoint_every_steps
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.objective = Objective(label_free=label_free, label_smoothing=label_smoothing)
        self.amp_dtype = _amp_dtype(amp, device)
        self.scaler = torch.amp.GradScaler(device.type) if self.amp_dtype == torch.float16 else None
        self.show_progress = info.is_main and (progress if progress is not None else sys.stderr.isatty())
        self._payload_template: dict[str, Any] | None = None
        self._last_loss: float | None = None
        self._labels_checked = False
        self._replace_old_run = False  # overwrite=True over an existing run: train in a staging folder
        self._final_dir: Path | None = None  # where the staging folder goes at the first checkpoint
        self._check_every = 1 if device.type in _SYNCHRONOUS_DEVICES else _FINITE_CHECK_EVERY

        resume_state = self._check_out_dir(resume, overwrite)
        model.to(device)
        params = _check_frozen(model)
        self._params = params  # watched for NaN/inf after every update
        if resume_state is None:
            init_stream(model, init, seed)

        self.train = prepare_train_loader(train_loader, seed=seed, rank=info.rank, world_size=info.world_size)
        if self.train.steps_per_epoch is None:
            raise ValueError("train_loader has no length; pass a DataLoader (or a list) of batches")
        if self.train.steps_per_epoch < 1:
            raise ValueError("train_loader yields no batch; check the dataset and the batch size (drop_last?)")
        self.val = None
        if val_loader is not None:
            self.val = prepare_eval_loader(val_loader, rank=info.rank, world_size=info.world_size)

        self.optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.scheduler = build_scheduler(
            self.optimizer,
            schedule,
            epochs=epochs,
            steps_per_epoch=self.train.steps_per_epoch,
            warmup_epochs=warmup_epochs,
            step_epochs=lr_step_epochs,
            gamma=lr_gamma,
        )
        self.config = {
            "epochs": epochs,
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "schedule": schedule,
            "lr_step_epochs": lr_step_epochs,
            "lr_gamma": lr_gamma,
            "warmup_epochs": warmup_epochs,
            "label_smoothing": label_smoothing,
            "label_free": label_free,
            "seed": seed,
            "global_batch": (self.train.batch_size or 0) * info.world_size,
            "steps_per_epoch": self.train.steps_per_epoch,
            "dataset_size": self.train.dataset_size,
        }
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.sums = self._zero_sums()
        self.history: list[dict[str, Any]] = []
        self.best_score = -math.inf
        if resume_state is not None:
            self._restore(resume_state)
        self._last_saved_step: int | None = self.global_step if resume_state is not None else None
        self._watch = _FiniteWatch(device, self.global_step)

    # ------------------------------------------------------------------ out_dir and resume
    def _check_out_dir(self, resume: bool, overwrite: bool) -> dict[str, Any] | None:
        if self.out_dir is None:
            return None
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"out_dir {str(self.out_dir)!r} is a file; give a folder")
        if self.info.is_main:
            # A kill -9 leaves temporary files, a staging folder, or (mid-swap) the old run
            # moved aside: clean up, and put the old run back, before looking at the folder.
            remove_stale_temp_files(self.out_dir.parent, target=self.out_dir.name)
            remove_stale_temp_files(self.out_dir, legacy_targets=RUN_FILES)
            check_output_dir(self.out_dir, name="out_dir")
            self.out_dir.mkdir(parents=True, exist_ok=True)  # fail now, not after the first epoch
        dist_utils.barrier(self.info)  # the other processes look at the folder once it is clean
        state_path = self.out_dir / "train_state.pt"
        if resume:
            if state_path.is_file():
                return load_train_state(state_path)
            if self.info.is_main:
                logger.warning("resume: %s does not exist yet; starting a new run", state_path)
            return None
        existing = [name for name in RUN_FILES if (self.out_dir / name).exists()]
        if existing and not overwrite:
            raise RunExistsError(
                f"{str(self.out_dir)!r} already holds a training run ({', '.join(existing)}); pass resume=True "
                "to continue it, overwrite=True to replace it, or choose another out_dir"
            )
        if existing:
            others = sorted(p.name for p in self.out_dir.iterdir() if p.name not in RUN_FILES)
            if others:
                raise ValueError(
                    f"overwrite=True replaces the whole folder {str(self.out_dir)!r} once the new run has its first "
                    f"checkpoint, but it also holds {others[:5]}; move those elsewhere, or choose another out_dir"
                )
            # The old run stays whole until the new one has its first checkpoint (see run()).
            self._replace_old_run = True
        return None

    def _start_staging(self) -> None:
        """overwrite=True: train into a temporary sibling folder until the first checkpoint."""
        if not self._replace_old_run or not self.info.is_main:
            return
        self._final_dir = self.out_dir
        self.out_dir = make_staging_dir(self.out_dir)
        logger.info("overwrite: the run in %s is kept until the new run's first checkpoint", self._final_dir)

    def _promote_staging(self) -> None:
        """After the first checkpoint: the staging folder replaces the old run (renames)."""
        if self._final_dir is None:
            return
        replace_directory(self.out_dir, self._final_dir)
        self.out_dir, self._final_dir = self._final_dir, None
        logger.info("overwrite: the new run replaced the old one in %s", self.out_dir)

    def _drop_staging(self) -> None:
        """The run failed before its first checkpoint: the old run stays, the staging folder goes."""
        if self._final_dir is None:
            return
        shutil.rmtree(self.out_dir, ignore_errors=True)
        self.out_dir, self._final_dir = self._final_dir, None

    def _restore(self, state: dict[str, Any]) -> None:
        source = f"training state {str(self.out_dir / 'train_state.pt')!r}"
        check_resume_config(state["config"], self.config, source=source)
        apply_stream_payload(self.model, state["stream"], source=source)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.history = [dict(record) for record in state["history"]]
        self.best_score = float(state.get("best_score", -math.inf))
        # The saved sums are the totals of all processes: rank 0 carries them, the others
        # start at zero, so the epoch's all-reduce still adds up to the true totals.
        if self.info.is_main:
            self.sums = torch.as_tensor(state["epoch_sums"], dtype=torch.float64).to(self.device)
            logger.info("resumed from %s at epoch %d, step %d", source, self.epoch + 1, self.step_in_epoch)

    # ------------------------------------------------------------------ loop
    def _zero_sums(self) -> Tensor:
        return torch.zeros(len(_TRAIN_FIELDS), dtype=torch.float64, device=self.device)

    def run(self) -> list[dict[str, Any]]:
        model = self.model
        try:
            self._start_staging()
            with (
                preserved_training(model),
                dist_utils.ddp_stream(model, self.info, self.device),
                model.pooling_as("ca"),
            ):
                while self.epoch < self.epochs:
                    if not self._train_epoch():
                        break  # max_steps reached
                    self._end_epoch()
            dist_utils.barrier(self.info)
        finally:
            self._drop_staging()
        return [dict(record) for record in self.history]

    def _lr_of_step(self, step: int) -> float:
        """The learning rate used by optimizer step ``step`` (0-based)."""
        base = self.scheduler.base_lrs[0]
        return base * self.scheduler.lr_lambdas[0](max(step, 0))

    def _train_epoch(self) -> bool:
        """Train until the end of the epoch; False when stopped early by ``max_steps``."""
        self.model.train()
        steps = self.train.steps_per_epoch
        started = time.perf_counter()
        bar = _progress_bar(self.show_progress, steps, self.step_in_epoch, f"epoch {self.epoch + 1}/{self.epochs}")
        last_images: Tensor | None = None
        try:
            for batch, dropped in self.train.epoch(self.epoch, self.step_in_epoch):
                self.sums[3] += dropped
                if batch is None:
                    self._watch.record_empty()
                    self._empty_batch(last_images)
                else:
                    images, labels = split_batch(batch)
                    last_images = images
                    self._step(images, labels)
                self.step_in_epoch += 1
                self.global_step += 1
                with warnings.catch_warnings():
                    # The schedule follows the step count even when a step was skipped (an empty
                    # batch, an fp16 overflow): torch's "scheduler before optimizer" warning is moot.
                    warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`", UserWarning)
                    self.scheduler.step()
                if bar is not None:
                    bar.update(1)
                    if self.step_in_epoch % 10 == 0 or self.step_in_epoch == steps:
                        s = self.sums.tolist()
                        bar.set_postfix(loss=f"{s[0] / max(s[2], 1):.4f}", acc=f"{s[1] / max(s[2], 1):.3f}")
                self.sums[4] += time.perf_counter() - started
                if self.on_step is not None or self.global_step % self._check_every == 0:
                    self._check_finite()  # before anything is saved or reported
                started = time.perf_counter()
                stop = self.max_steps is not None and self.global_step >= self.max_steps
                periodic = self.checkpoint_every is not None and self.global_step % self.checkpoint_every == 0
                if self.out_dir is not None and (stop or periodic):
                    self._save_state()
                if self.on_step is not None:
                    self.on_step(
                        {
                            "epoch": self.epoch + 1,
                            "step": self.step_in_epoch,
                            "global_step": self.global_step,
                            "loss": self._last_loss,
                            "lr": self._lr_of_step(self.global_step - 1),
                        }
                    )
                if stop:
                    if self.info.is_main:
                        logger.info(
                            "max_steps=%d reached at epoch %d, step %d; resume=True continues",
                            self.max_steps,
                            self.epoch + 1,
                            self.step_in_epoch,
                        )
                    return False
        finally:
            if bar is not None:
                bar.close()
        return True

    def _step(self, images: Tensor, labels: Tensor | None) -> None:
        if not self._labels_checked and labels is not None and not self.objective.label_free:
            _check_labels(labels, self.model.num_classes)
            self._labels_checked = True
        images = images.to(self.device, non_blocking=True)
        if labels is not None:
            labels = labels.to(self.device, non_blocking=True)
        loss, correct = train_step(
            self.model, self.optimizer, images, labels, self.objective, amp_dtype=self.amp_dtype, scaler=self.scaler
        )
        self._watch.record(loss, images, self._params)
        n = images.shape[0]
        self.sums[0] += loss.double() * n
        self.sums[1] += correct
        self.sums[2] += n
        self._last_loss = float(loss) if self.on_step is not None else None

    def _empty_batch(self, last_images: Tensor | None) -> None:
        """A batch whose images were all unreadable: skip it (all processes must still step)."""
        if self.info.is_main:
            logger.warning(
                "epoch %d step %d: every image of the batch was unreadable; batch skipped",
                self.epoch + 1,
                self.step_in_epoch + 1,
            )
        if not self.info.enabled:
            return
        # Other processes run DDP's gradient all-reduce for this step: join it with a zero loss.
        if last_images is None:
            raise RuntimeError(
                f"rank {self.info.rank}: every image of its first batch is unreadable; remove the broken files "
                "(the warnings name them) and restart"
            )
        self.optimizer.zero_grad(set_to_none=True)
        class_specific = self.model.stream.config.class_specific
        class_index = torch.zeros(1, dtype=torch.long, device=self.device) if class_specific else None
        with self.model.pooling_as("ca"):
            logits = self.model(last_images[:1].to(self.device), class_index=class_index)
        (logits.float().sum() * 0.0).backward()
        self.optimizer.step()

    def _end_epoch(self) -> None:
        self._check_finite()
        totals = dist_utils.all_reduce_sum(self.sums, self.info).tolist()
        train = dict(zip(_TRAIN_FIELDS, totals, strict=True))
        if train["count"] == 0:
            raise ValueError(
                f"epoch {self.epoch + 1}: every training image was unreadable ({int(train['skipped'])} skipped), so "
                "nothing was trained and no checkpoint is written; fix or remove the broken files (the warnings name "
                "them), or check the dataset's transform"
            )
        record: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "train_loss": _ratio(train["loss"], train["count"]),
            "train_acc": _ratio(train["correct"], train["count"]),
            "val_loss": None,
            "val_acc_ca": None,
            "val_acc_gap": None,
            "val_agreement": None,
            "lr": self._lr_of_step(self.global_step - 1),
            "steps": self.train.steps_per_epoch,
            "skipped": int(train["skipped"]),
        }
        started = time.perf_counter()
        if self.val is not None:
            batches, counts, sharded = self.val
            with eval_mode(self.model):
                sums = evaluate_sums(
                    self.model, batches, self.objective, device=self.device, amp_dtype=self.amp_dtype, counts=counts
                )
            if sharded:
                sums = dist_utils.all_reduce_sum(sums, self.info)
            record.update(_eval_metrics(sums.cpu(), self.objective.label_free))
            record["skipped"] += int(sums[6])
            if record["val_loss"] is not None and not math.isfinite(record["val_loss"]):
                raise NonFiniteLossError(
                    f"the validation loss is {record['val_loss']} after epoch {record['epoch']} although every "
                    "training loss was finite: val_loader's images hold NaN or inf values, or the model overflows in "
                    f"mixed precision (amp=False avoids that); {self._kept_checkpoint()}",
                    cause="validation",
                )
        # Time across processes was summed: report the wall time of one process.
        record["time"] = round(train["seconds"] / self.info.world_size + time.perf_counter() - started, 3)
        self.history.append(record)
        improved = _score(record) > self.best_score
        if improved:
            self.best_score = _score(record)
        self.epoch += 1
        self.step_in_epoch = 0
        self.sums = self._zero_sums()
        if self.out_dir is not None and self.info.is_main:
            payload = {**self._stream_payload(), "train_info": dict(record)}
            atomic_torch_save(payload, self.out_dir / "last.pt")
            if improved:
                atomic_torch_save(payload, self.out_dir / "best.pt")
            _write_history(self.out_dir / "history.jsonl", self.history)
        if self.out_dir is not None:
            self._save_state()  # last: the commit point of the epoch
        if record["skipped"] and self.info.is_main:
            logger.warning("epoch %d: %d unreadable images skipped", record["epoch"], record["skipped"])
        if self.info.is_main:
            logger.info("%s", _summary(record, self.epochs))

    # ------------------------------------------------------------------ checkpoints
    def _stream_payload(self) -> dict[str, Any]:
        with dist_utils.plain_stream(self.model) as model:
            if self._payload_template is None:
                self._payload_template = stream_payload(model)
                return self._payload_template
            # The frozen backbone never changes: reuse its fingerprint instead of hashing
            # every weight again at each checkpoint.
            state = {k: v.detach().cpu().clone() for k, v in model.stream.state_dict().items()}
            check_finite_state(state, "the stream to save")  # the last guard: never save NaN weights
            return {**self._payload_template, "state_dict": state}

    def _save_state(self) -> None:
        """Write train_state.pt (rank 0); the epoch sums are totalled over processes first.

        The first state of a run that replaces another (``overwrite=True``) is written into
        the staging folder, which then takes the old run's place.
        """
        self._check_finite()
        sums = dist_utils.all_reduce_sum(self.sums, self.info)  # collective: every rank calls it
        self._last_saved_step = self.global_step
        if not self.info.is_main:
            return
        save_train_state(
            self.out_dir / "train_state.pt",
            {
                "stream": self._stream_payload(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "rng": capture_rng_state(),
                "epoch_sums": sums.cpu(),
                "history": self.history,
                "best_score": self.best_score,
                "config": self.config,
                "world_size": self.info.world_size,
            },
        )
        if self.metadata is not None:  # how the run's images are prepared, and whether the run is finished
            status = {"epochs_done": self.epoch, "epochs": self.epochs, "finished": self.epoch >= self.epochs}
            text = json.dumps({**self.metadata, **status}, indent=2, allow_nan=False) + "\n"
            atomic_write_text(self.out_dir / "run.json", text)
        self._promote_staging()

    # ------------------------------------------------------------------ non-finite losses
    def _check_finite(self) -> None:
        """Raise NonFiniteLossError if a loss since the last check was NaN/inf (every rank calls it)."""
        problem = self._watch.check(self.global_step, self.info)
        if problem is None:
            return
        step, loss, images_finite, loss_finite = problem
        epoch, in_epoch = divmod(step - 1, self.train.steps_per_epoch)
        where = f"epoch {epoch + 1}, step {in_epoch + 1} (global step {step})"
        if loss_finite:
            what = f"the stream's weights became NaN or inf in the update of {where} (its loss was {loss})"
        else:
            what = f"the training loss became {loss} at {where}"
        if images_finite:
            cause = (
                f"training diverged at lr {self._lr_of_step(step - 1):g}: lower the learning rate (lr), add "
                "warmup_epochs, or train with amp=False"
            )
        else:
            cause = "that batch's images hold NaN or inf values: fix the data or its transform"
        raise NonFiniteLossError(
            f"{what}; {cause}; {self._kept_checkpoint()}", cause="diverged" if images_finite else "images"
        )

    def _kept_checkpoint(self) -> str:
        if self._final_dir is not None or (self._replace_old_run and self._last_saved_step is None):
            return f"the previous run in {str(self._final_dir or self.out_dir)!r} is kept as it was"
        if self.out_dir is None:
            return "nothing was saved (out_dir=None)"
        if self._last_saved_step is None:
            return f"no checkpoint was written to {str(self.out_dir)!r}"
        return (
            f"the last finite checkpoint ({str(self.out_dir / 'train_state.pt')!r}, global step "
            f"{self._last_saved_step}) is kept and nothing after it was written"
        )


def _check_labels(labels: Tensor, num_classes: int) -> None:
    """Catch labels the classifier cannot have (a wrong dataset) with a readable message."""
    if labels.is_floating_point() or labels.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D tensor of class indices, got {labels.dtype} of shape {tuple(labels.shape)}"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"labels must be class indices in [0, {num_classes}) for this classifier, got values in [{low}, {high}]; "
            "the dataset's classes must be the classifier's (or train with label_free=True)"
        )


def _progress_bar(enabled: bool, total: int, initial: int, desc: str) -> tqdm | None:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite the whole JSON-lines log atomically (a resumed run never duplicates lines).

    Strict JSON: a NaN or inf would raise here (the loss checks stop training before that).
    """
    atomic_write_text(path, "".join(json.dumps(record, allow_nan=False) + "\n" for record in history))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _summary(record: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {record['epoch']}/{epochs}: train loss {_fmt(record['train_loss'], '.4f')} "
        f"acc {_fmt(record['train_acc'], '.4f')} | val loss {_fmt(record['val_loss'], '.4f')} "
        f"acc CA {_fmt(record['val_acc_ca'], '.4f')} GAP {_fmt(record['val_acc_gap'], '.4f')} | "
        f"lr {record['lr']:.3g} | {record['time']:.1f}s"
    )
