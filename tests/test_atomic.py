"""The one atomic writer: unique temporary names, no symlink following, permissions without
touching the umask, whole-or-nothing folders, and cleanup of what killed writers leave."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from xai_pool import atomic
from xai_pool.atomic import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temp_files,
    replace_directory,
    temp_name,
)


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def owned_name(target: str, pid: int, kind: str = "tmp") -> str:
    return f".{target}.{atomic._host_tag()}.{pid}.{'ab' * 6}.{kind}"


def test_temp_names_are_unique_and_name_their_owner(tmp_path) -> None:
    names = {temp_name("history.jsonl") for _ in range(200)}
    assert len(names) == 200
    name = names.pop()
    assert name.startswith(".history.jsonl.") and name.endswith(".tmp")
    assert f".{os.getpid()}." in name


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(tmp_path, monkeypatch) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    # The old fixed temporary name of history.jsonl, and the next name the writer will draw.
    (tmp_path / ".history.jsonl.tmp").symlink_to(victim)
    tokens = iter(["aa" * 6, "bb" * 6])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(tokens))
    planted = tmp_path / f".history.jsonl.{atomic._host_tag()}.{os.getpid()}.{'aa' * 6}.tmp"
    planted.symlink_to(victim)
    atomic_write_text(tmp_path / "history.jsonl", '{"epoch": 1}\n')
    assert victim.read_text() == "precious"
    assert (tmp_path / "history.jsonl").read_text() == '{"epoch": 1}\n'
    assert planted.is_symlink()  # left alone; the writer drew another name


def test_the_writer_gives_up_rather_than_follow_a_taken_name(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "cc" * 6)
    (tmp_path / temp_name("a.txt")).write_text("someone else's")
    with pytest.raises(FileExistsError, match="unique temporary file"):
        atomic_write_text(tmp_path / "a.txt", "x")
    assert not (tmp_path / "a.txt").exists()


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_permissions_follow_the_umask_and_the_umask_is_never_touched(tmp_path, monkeypatch, mask) -> None:
    old = os.umask(mask)
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda value: calls.append(value) or real_umask(value))
    try:
        path = atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert calls == []  # neither read nor changed (os.umask is the only way to read it)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_umask_stays_put_while_another_thread_writes(tmp_path) -> None:
    old = os.umask(0o027)
    seen, stop = set(), threading.Event()

    def writer() -> None:
        for i in range(200):
            atomic_write_bytes(tmp_path / f"{i % 5}.bin", b"data")
        stop.set()

    try:
        thread = threading.Thread(target=writer)
        thread.start()
        while not stop.is_set():
            mask = os.umask(0o027)  # read it (setting the same value back)
            seen.add(mask)
        thread.join()
    finally:
        os.umask(old)
    assert seen == {0o027}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def boom(handle) -> None:
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic.atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_stale_temporary_files_of_dead_writers_go_and_live_ones_stay(tmp_path) -> None:
    dead = dead_pid()
    stale_file = tmp_path / owned_name("last.pt", dead)
    stale_file.write_bytes(b"half a checkpoint")
    stale_dir = tmp_path / owned_name("run", dead)
    (stale_dir / "sub").mkdir(parents=True)
    live = tmp_path / owned_name("best.pt", os.getpid())
    live.write_bytes(b"being written")
    other_host = tmp_path / f".last.pt.0123abcd.{dead}.{'ab' * 6}.tmp"
    other_host.write_bytes(b"another machine's")
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_text("the user's")
    removed = remove_stale_temp_files(tmp_path)
    assert set(removed) == {stale_file, stale_dir}
    assert live.exists() and other_host.exists() and unrelated.exists()


def test_old_style_temporary_files_go_only_for_named_targets_and_when_old(tmp_path) -> None:
    old_fixed = tmp_path / ".history.jsonl.tmp"
    old_mkstemp = tmp_path / ".last.pt.k2j4_9ab.tmp"
    recent = tmp_path / ".best.pt.zz00zz00.tmp"
    foreign = tmp_path / ".other.tmp"
    for path in (old_fixed, old_mkstemp, recent, foreign):
        path.write_bytes(b"x")
    an_hour_ago = time.time() - 2 * atomic.LEGACY_TEMP_MAX_AGE
    for path in (old_fixed, old_mkstemp, foreign):
        os.utime(path, (an_hour_ago, an_hour_ago))
    removed = remove_stale_temp_files(tmp_path, legacy_targets=("history.jsonl", "last.pt", "best.pt"))
    assert set(removed) == {old_fixed, old_mkstemp}
    assert recent.exists() and foreign.exists()


def test_atomic_directory_is_whole_or_nothing(tmp_path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="halfway"), atomic_directory(target) as staging:
        atomic_write_text(staging / "a.txt", "a")
        raise RuntimeError("halfway")
    assert list(tmp_path.iterdir()) == []  # no target, no staging folder
    with atomic_directory(target) as staging:
        atomic_write_text(staging / "a.txt", "a")
        assert not target.exists()  # nothing visible before the end
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (target / "a.txt").read_text() == "a"


def test_replacing_a_folder_keeps_the_old_one_until_the_new_one_is_in_place(tmp_path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    new = atomic.make_staging_dir(target)
    (new / "new.txt").write_text("new")
    replace_directory(new, target)
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_folder_moved_aside_by_a_killed_swap_is_put_back(tmp_path) -> None:
    dead = dead_pid()
    aside = tmp_path / owned_name("run", dead, "old")
    aside.mkdir()
    (aside / "train_state.pt").write_bytes(b"old run")
    staging = tmp_path / owned_name("run", dead)
    staging.mkdir()
    (staging / "train_state.pt").write_bytes(b"new run")
    remove_stale_temp_files(tmp_path, target="run")
    assert (tmp_path / "run" / "train_state.pt").read_bytes() == b"old run"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_folder_moved_aside_after_the_new_one_arrived_is_deleted(tmp_path) -> None:
    aside = tmp_path / owned_name("run", dead_pid(), "old")
    aside.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train_state.pt").write_bytes(b"new run")
    remove_stale_temp_files(tmp_path, target="run")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (tmp_path / "run" / "train_state.pt").read_bytes() == b"new run"
