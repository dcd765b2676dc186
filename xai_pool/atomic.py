"""Atomic files and folders: whole or not at all, and no temporary file outlives its writer.

One writer for every file xai_pool produces (:func:`atomic_write`): the data goes to a
temporary file in the target's folder, is fsynced, renamed over the target with
``os.replace`` and the folder is fsynced, so a crash, a Ctrl-C or a full disk leaves either
the previous file or the new one, never a partial file.

Temporary names are ``.{target}.{host}.{pid}.{token}.tmp``: unique (a random token; created
with ``O_CREAT | O_EXCL``, so a file or symbolic link planted at that name is never followed
or overwritten), and attributable to their writer (host and process id). The file is created
with mode 0o666 and the kernel applies the umask: the umask is never read or changed (doing
so is racy with other threads).

Output folders are built the same way (:func:`atomic_directory`): in a temporary sibling
folder with the same naming, renamed into place when complete. Replacing an existing folder
moves it aside to ``.{target}.{host}.{pid}.{token}.old`` first, renames the new one into
place, then deletes the old one.

A process killed with ``kill -9`` cannot clean up: :func:`remove_stale_temp_files` (called at
the start of every training run and ``xai-pool explain``) removes the temporary files and
folders of writers on this host whose process is gone, and puts back a folder that was moved
aside when its replacement never arrived.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_directory",
    "make_staging_dir",
    "replace_directory",
    "remove_stale_temp_files",
    "temp_name",
    "fsync_dir",
]

logger = logging.getLogger("xai_pool")

# Temporary files of earlier xai_pool versions carry no owner: ``.name.tmp`` or mkstemp's
# ``.name.XXXXXXXX.tmp``. They are removed once older than this (seconds).
LEGACY_TEMP_MAX_AGE = 3600.0
_CREATE_ATTEMPTS = 100
_OWNED = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{12})\.(?P<kind>tmp|old)$"
)
_LEGACY = re.compile(r"^\.(?P<target>.+?)(\.[a-z0-9_]{8})?\.tmp$")


def _host_tag() -> str:
    # A short hash of the host name: temporary files on a shared file system are only ever
    # cleaned up by the host that wrote them (process ids mean nothing on another host).
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_name(target: str, kind: str = "tmp") -> str:
    """A fresh temporary name for ``target`` owned by this process: ``.{target}.{host}.{pid}.{token}.{kind}``."""
    return f".{target}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(6)}.{kind}"


def fsync_dir(folder: str | os.PathLike) -> None:
    """Fsync a folder so that renames and new entries in it survive a power loss.

    A no-op on Windows, and where the file system does not support fsync on folders.
    """
    if os.name == "nt":  # folders cannot be opened for fsync there; NTFS journals renames
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # e.g. some network file systems
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _create_exclusive(folder: Path, target: str) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(_CREATE_ATTEMPTS):
        tmp = folder / temp_name(target)
        try:
            # 0o666: the kernel applies the umask, as for any newly created file.
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # taken (or planted): never follow it, draw another name
            continue
    raise FileExistsError(
        errno.EEXIST, f"could not create a unique temporary file for {target!r} in {str(folder)!r}", str(folder)
    )


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a new temporary binary file, fsync it, then rename it to ``path``.

    Missing parent folders are created. The file gets the usual permissions (0o666 minus the
    umask). If ``write`` raises (or the process is interrupted), ``path`` is untouched and the
    temporary file is removed; after a ``kill -9`` it is removed by the next
    :func:`remove_stale_temp_files` of its folder.

    Args:
        path: the file to write.
        write: called once with a binary file handle.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_exclusive(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------- folders
def make_staging_dir(target: str | os.PathLike) -> Path:
    """Create an empty temporary sibling folder of ``target`` (owned by this process) and return it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(_CREATE_ATTEMPTS):
        staging = target.parent / temp_name(target.name)
        try:
            staging.mkdir()  # mode 0o777 minus the umask
            return staging
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"could not create a staging folder next to {str(target)!r}", str(target))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def replace_directory(new: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Rename the complete folder ``new`` to ``target``, replacing the folder there if any.

    An existing ``target`` is first renamed aside (``.{target}...old``), then ``new`` is
    renamed into place and the old folder deleted. A kill between the two renames leaves no
    ``target``; the next :func:`remove_stale_temp_files` of the parent puts the old folder back.

    Returns:
        ``target`` as a :class:`~pathlib.Path`.
    """
    new, target = Path(new), Path(target)
    parent = target.parent
    backup = None
    if target.is_symlink():
        raise ValueError(f"{str(target)!r} is a symbolic link; give the real folder it points to")
    if target.exists():
        if not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(target))
        backup = parent / temp_name(target.name, "old")
        os.rename(target, backup)
    os.rename(new, target)
    fsync_dir(parent)
    if backup is not None:
        shutil.rmtree(backup)
    return target


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Build a folder whole or not at all: yield an empty staging folder, rename it to ``target`` at the end.

    If the block raises, the staging folder is deleted and ``target`` is untouched. An
    existing ``target`` is replaced only when the new folder is complete (see
    :func:`replace_directory`); checking whether it may be replaced is the caller's job.

    Example:
        >>> with atomic_directory("results") as tmp:  # doctest: +SKIP
        ...     atomic_write_text(tmp / "a.txt", "...")
    """
    target = Path(target)
    staging = make_staging_dir(target)
    try:
        yield staging
        fsync_dir(staging)
        replace_directory(staging, target)
    except BaseException:
        _remove(staging)
        raise


# ----------------------------------------------------------------------------- cleanup
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there: assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temp_files(
    folder: str | os.PathLike,
    *,
    target: str | None = None,
    legacy_targets: Collection[str] = (),
    legacy_max_age: float = LEGACY_TEMP_MAX_AGE,
) -> list[Path]:
    """Remove the temporary files and folders of dead writers in ``folder``.

    An entry named ``.{name}.{host}.{pid}.{token}.tmp`` is removed when it was made on this
    host by a process that no longer exists; one named ``.{name}...old`` (a folder moved
    aside by :func:`replace_directory`) is renamed back to ``name`` if nothing took its place,
    else removed. Live writers' files, other hosts' files, and anything else are left alone.
    Owner-less temporary files of earlier xai_pool versions (``.{name}.tmp``,
    ``.{name}.XXXXXXXX.tmp``) are removed only for the names in ``legacy_targets`` and once
    older than ``legacy_max_age`` seconds (their writer cannot be known).

    Args:
        folder: the folder to clean (a missing folder is fine).
        target: only entries that belong to this name (e.g. a run folder's siblings).
        legacy_targets: file names whose owner-less temporary files may be removed.
        legacy_max_age: age in seconds above which those go.

    Returns:
        The paths removed or restored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host = _host_tag()
    owned, legacy = [], []
    for entry in folder.iterdir():
        match = _OWNED.match(entry.name)
        if match:
            mine = (target is None or match["target"] == target) and match["host"] == host
            if mine and not _pid_alive(int(match["pid"])):
                owned.append((match["kind"], match["target"], entry))
            continue
        match = _LEGACY.match(entry.name)
        if match and match["target"] in legacy_targets and (target is None or match["target"] == target):
            legacy.append(entry)
    done: list[Path] = []
    # Restore folders moved aside first, so that a half-finished swap gets its old folder back.
    for kind, name, entry in sorted(owned, key=lambda item: item[0] != "old"):
        original = folder / name
        if kind == "old" and not original.exists() and not original.is_symlink():
            os.rename(entry, original)
            logger.warning("restored %s, moved aside by a process that was killed", original)
        else:
            _remove(entry)
        done.append(entry)
    now = time.time()
    for entry in legacy:
        try:
            info = entry.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and now - info.st_mtime > legacy_max_age:
            entry.unlink(missing_ok=True)
            done.append(entry)
    if done:
        logger.info("removed %d stale temporary entries in %s", len(done), folder)
    return done
