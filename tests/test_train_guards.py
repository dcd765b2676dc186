"""Training never reports a failure as a success and never loses a run: non-finite losses and
weights stop it, unreadable data fails, history.jsonl is strict JSON, overwrite keeps the old
run until the new one has a checkpoint (also under kill -9), and stale temporary files go."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from xai_pool import load_stream, save_stream, train_stream
from xai_pool.atomic import _host_tag
from xai_pool.train import NonFiniteLossError, load_train_state
from xai_pool.train.trainer import _write_history

from .test_atomic import dead_pid
from .test_train_core import colour_problem
from .test_train_resume import NoisyColours, assert_same_history, assert_same_stream, model, run

ROOT = Path(__file__).resolve().parents[1]


def strict_json_lines(path: Path) -> list[dict]:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_lr_1e30_names_the_step_and_writes_no_checkpoint_after_it(tmp_path) -> None:
    steps = []
    with pytest.raises(NonFiniteLossError) as info:
        run(tmp_path, lr=1e30, checkpoint_every_steps=1, on_step=lambda i: steps.append(i["global_step"]))
    message = str(info.value)
    assert "global step 2" in message and "lr 1e+30" in message and "lower the learning rate" in message
    assert "last finite checkpoint" in message and "global step 1" in message
    assert steps == [1]  # on_step never saw the bad step
    assert load_train_state(tmp_path / "train_state.pt")["global_step"] == 1
    assert not (tmp_path / "history.jsonl").exists() and not (tmp_path / "best.pt").exists()


def test_checks_every_few_steps_still_name_the_first_bad_step(tmp_path, monkeypatch) -> None:
    # As on a GPU: the flags are read every 10 steps (here at the end of epoch 1, step 6).
    import xai_pool.train.trainer as trainer

    monkeypatch.setattr(trainer, "_SYNCHRONOUS_DEVICES", ())
    with pytest.raises(NonFiniteLossError, match=r"update of epoch 1, step 2 \(global step 2\)"):
        run(tmp_path, lr=1e30, checkpoint_every_steps=None)
    assert list(tmp_path.iterdir()) == []  # nothing written after the bad step


class NaNAt(Dataset):
    """The colour problem with one sample made of NaN."""

    def __init__(self, bad: int) -> None:
        self.images, self.labels = colour_problem(32, 0)
        self.images[bad] = float("nan")

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


def test_nan_images_are_blamed_not_the_learning_rate(tmp_path) -> None:
    with pytest.raises(NonFiniteLossError, match="images hold NaN or inf values") as info:
        train_stream(model(), DataLoader(NaNAt(5), batch_size=8), epochs=1, lr=0.1, out_dir=tmp_path)
    assert "learning rate" not in str(info.value)
    assert not (tmp_path / "last.pt").exists()


def test_nan_validation_images_stop_before_the_epoch_is_written(tmp_path) -> None:
    images, labels = colour_problem(16, 1)
    images[0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="validation loss is nan after epoch 1"):
        train_stream(
            model(),
            DataLoader(NoisyColours(16, 0), batch_size=8),
            val_loader=DataLoader(TensorDataset(images, labels), batch_size=8),
            epochs=1,
            lr=0.1,
            out_dir=tmp_path,
        )
    assert not (tmp_path / "history.jsonl").exists()


class Unreadable(Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int):
        return None  # what SafeImageFolder gives for a broken file


def test_a_folder_of_unreadable_images_fails_instead_of_training_nothing(tmp_path) -> None:
    from xai_pool.imageio import skip_none_collate

    loader = DataLoader(Unreadable(), batch_size=8, collate_fn=skip_none_collate)
    with pytest.raises(ValueError, match=r"epoch 1: every training image was unreadable \(16 skipped\)"):
        train_stream(model(), loader, epochs=2, lr=0.1, out_dir=tmp_path)
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "last.pt").exists()


def test_history_is_strict_json(tmp_path) -> None:
    run(tmp_path, epochs=2)
    assert [r["epoch"] for r in strict_json_lines(tmp_path / "history.jsonl")] == [1, 2]
    assert strict_json_lines(tmp_path / "history.jsonl")[0]["epoch"] == 1
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _write_history(tmp_path / "h.jsonl", [{"train_loss": float("nan")}])
    assert not (tmp_path / "h.jsonl").exists()


def test_non_finite_streams_are_neither_saved_nor_loaded(tmp_path) -> None:
    good = model()
    path = save_stream(good, tmp_path / "good.pt")
    bad = model()
    with torch.no_grad():
        bad.stream.blocks[0].proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"holds NaN or infinite weights in 1 tensor\(s\) \('blocks.0.proj.weight'"):
        save_stream(bad, tmp_path / "bad.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["query"] = payload["state_dict"]["query"] * float("inf")
    torch.save(payload, tmp_path / "inf.pt")
    target = model()
    before = {k: v.clone() for k, v in target.stream.state_dict().items()}
    with pytest.raises(ValueError, match=r"inf.pt' holds NaN or infinite weights.*'query'"):
        load_stream(target, tmp_path / "inf.pt")
    assert all(torch.equal(before[k], v) for k, v in target.stream.state_dict().items())  # untouched


# ----------------------------------------------------------------------------- overwrite
def test_overwrite_keeps_the_old_run_when_the_new_one_fails_early(tmp_path) -> None:
    out = tmp_path / "run"
    run(out, epochs=1, lr=0.3)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(NonFiniteLossError, match="the previous run in .* is kept as it was"):
        run(out, lr=1e30, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # the staging folder is gone


def test_overwrite_replaces_the_run_at_its_first_checkpoint(tmp_path, uninterrupted) -> None:
    out = tmp_path / "run"
    run(out, epochs=1, lr=0.3)
    old_state = (out / "train_state.pt").read_bytes()
    seen = []

    def watch(info) -> None:
        seen.append((info["global_step"], (out / "train_state.pt").read_bytes() == old_state))

    ca, history = run(out, overwrite=True, on_step=watch)
    assert seen[:3] == [(1, True), (2, True), (3, True)]  # the old run, whole, until step 4's checkpoint
    assert seen[3] == (4, False)
    assert_same_stream(ca, uninterrupted[0])
    assert_same_history(history, uninterrupted[1])
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_overwrite_refuses_a_folder_with_other_files(tmp_path) -> None:
    run(tmp_path, epochs=1)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"also holds \['notes.txt'\]"):
        run(tmp_path, epochs=1, overwrite=True)


def test_stale_temporary_files_are_removed_when_a_run_starts(tmp_path) -> None:
    out = tmp_path / "run"
    run(out, epochs=1)
    dead = dead_pid()
    stale = out / f".last.pt.{_host_tag()}.{dead}.{'ab' * 6}.tmp"
    stale.write_bytes(b"x" * 1000)
    legacy = out / ".train_state.pt.abcd1234.tmp"  # an earlier version's mkstemp name
    legacy.write_bytes(b"x")
    os.utime(legacy, (0, 0))
    staging = tmp_path / f".run.{_host_tag()}.{dead}.{'cd' * 6}.tmp"
    staging.mkdir()
    run(out, epochs=2, resume=True)
    assert not stale.exists() and not legacy.exists() and not staging.exists()


_CHILD = """
import os, shutil, signal, sys
from pathlib import Path
import xai_pool.atomic as atomic
import xai_pool.train.trainer as trainer
from tests.test_train_resume import run

point, out = sys.argv[1], Path(sys.argv[2])
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
on_step = None
if point == "staging":
    on_step = lambda info: info["global_step"] == 2 and die()
elif point == "before_swap":
    trainer.replace_directory = die
elif point == "between_renames":
    real = os.rename
    def rename(src, dst):
        real(src, dst)
        if str(dst).endswith(".old"):
            die()
    os.rename = rename
elif point == "after_swap":
    atomic.shutil = type("S", (), {"rmtree": staticmethod(die)})
elif point == "later":
    on_step = lambda info: info["global_step"] == 9 and die()
elif point == "mid_write":  # a checkpoint half written when the process dies
    import torch
    def save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        handle.flush()
        die()
    torch.save = save
    run(out, resume=True, epochs=2)
run(out, overwrite=True, on_step=on_step)
"""


@pytest.mark.parametrize(
    "point, kept",
    [
        pytest.param("staging", "old", marks=pytest.mark.slow),
        pytest.param("before_swap", "old", marks=pytest.mark.slow),
        ("between_renames", "old"),
        pytest.param("after_swap", "new", marks=pytest.mark.slow),
        pytest.param("later", "new", marks=pytest.mark.slow),
    ],
)
def test_kill_9_during_overwrite_leaves_the_old_run_or_the_new_one(tmp_path, uninterrupted, point, kept) -> None:
    out = tmp_path / "run"
    run(out, epochs=1, lr=0.3)
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, point, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    if kept == "old":
        # Resuming with the new settings refuses the old run (it was trained with lr 0.3) ...
        with pytest.raises(ValueError, match="lr: checkpoint 0.3 vs now 0.5"):
            run(out, resume=True)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # ... which is back, whole
    else:
        resumed, history = run(out, resume=True)  # the new run continues, bit for bit
        assert_same_stream(resumed, uninterrupted[0])
        assert_same_history(history, uninterrupted[1])
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging or moved-aside folder left


@pytest.mark.slow
def test_a_checkpoint_half_written_by_a_killed_run_is_removed_by_the_next(tmp_path) -> None:
    out = tmp_path / "run"
    run(out, epochs=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, "mid_write", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL
    leftovers = [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].read_bytes() == b"half a checkpoint"
    _, history = run(out, resume=True, epochs=2)
    assert len(history) == 2 and not leftovers[0].exists()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    return (*run(out), out)
