"""Claiming an output container: one writer at a time, and nothing but a container is replaced.

mm-deepz never deletes what it did not write. An output path is used only when it does not
exist, is an empty folder, or is an mm-deepz container (a zarr group whose root attributes
hold ``mm_deepz``) that the user asked to replace. A replaced container is moved aside first
and deleted only once the new container exists; if the new one cannot be created, the old one
is moved back.

While a run writes, it holds an exclusive ``flock`` on the hidden file ``.NAME.lock`` beside
the container ``NAME`` (beside, not inside: zarr warns about files in a hierarchy that are not
part of it). The kernel releases the lock when the process ends, however it ends (kill -9
included), so a dead writer's lock is never stale; a second writer is refused with the
holder's process, host and start time. The lock file stays (removing it would race with a
writer opening it); it is a few bytes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from ..errors import DeepZError

logger = logging.getLogger(__name__)


def lock_path(container: Path) -> Path:
    """The lock file of a container path."""
    return container.parent / f".{container.name}.lock"


class OutputExistsError(DeepZError):
    """The output path already holds data that may not be replaced (or replacing was not asked for)."""


class ContainerLockedError(DeepZError):
    """The container cannot be locked for writing: another process writes it (or its lock file
    cannot be made)."""


def is_container(path: str | Path) -> bool:
    """Whether ``path`` is a container written by mm-deepz (its root attributes hold ``mm_deepz``)."""
    meta = Path(path) / "zarr.json"
    try:
        return "mm_deepz" in json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False


class ContainerLock:
    """An exclusive lock on a container path, released by the kernel when its process dies."""

    def __init__(self, container: Path):
        self.container = Path(container)
        self._path = lock_path(self.container)
        try:
            self._file = open(self._path, "a+")  # noqa: SIM115 - held for the lock's lifetime
        except OSError as e:
            raise ContainerLockedError(
                f"Cannot make the lock file {self._path} to write {self.container}: {e}. Is "
                "the folder writable?"
            ) from e
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "an unknown process"
            self._file.close()
            raise ContainerLockedError(
                f"{self.container} is being written by {holder}: wait for that run to end, or choose another "
                "output."
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(
            f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        self._file.flush()
        self.inode = os.fstat(self._file.fileno()).st_ino

    def held(self) -> bool:
        """Whether the lock file is still the one this lock holds (not deleted or replaced)."""
        try:
            return os.stat(self._path).st_ino == self.inode
        except OSError:
            return False

    def release(self) -> None:
        """Let other writers in (the lock file stays: removing it would race with them)."""
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


def _check_path(path: Path, overwrite: bool) -> None:
    """Refuse (:class:`OutputExistsError`) an output that may not be written; touches nothing."""
    here = Path.cwd().resolve()
    target = path.resolve()
    if target == here or target in here.parents:
        raise OutputExistsError(
            f"{path} is the current folder or one that holds it: choose a new name ending in "
            ".ome.zarr for the output."
        )
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputExistsError(
            f"{path} exists and is not a folder: mm-deepz never replaces it. Choose another output."
        )
    if path.is_dir() and any(path.iterdir()):
        if not is_container(path):
            raise OutputExistsError(
                f"{path} holds files that mm-deepz did not write: it never replaces them. "
                "Choose another output (a new name ending in .ome.zarr)."
            )
        if not overwrite:
            raise OutputExistsError(
                f"{path} already holds an mm-deepz run: choose another output, or replace it "
                "(--overwrite; the panel asks)."
            )


def preflight_output(path: str | Path, overwrite: bool = False) -> None:
    """Refuse an output that may not be written, before anything moves: :class:`ContainerLockedError`
    while another run writes it, :class:`OutputExistsError` for anything else in the way. Changes
    nothing but the lock file beside an existing container."""
    path = Path(path)
    if is_container(path):
        ContainerLock(path).release()  # raises while another process writes it
    _check_path(path, overwrite)


def next_free_output(path: str | Path) -> Path:
    """``path`` if nothing is there, else the first free ``name_2.ome.zarr``, ``name_3.ome.zarr`` …"""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return path
    suffix = ".ome.zarr" if path.name.endswith(".ome.zarr") else path.suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    base, _, number = stem.rpartition("_")
    stem = base if base and number.isdigit() else stem
    n = 2
    while (candidate := path.with_name(f"{stem}_{n}{suffix}")).exists() or candidate.is_symlink():
        n += 1
    return candidate


class Claim:
    """An output folder this process may write: locked, and a replaced container held aside."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path = Path(path)
        self._aside: Path | None = None
        self._created = False
        #: whether the folder's content is this claim's (removed again if the container cannot be made)
        self._ours = False
        preflight_output(self.path, overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = ContainerLock(self.path)  # held from here: no other writer can slip in
        try:
            _check_path(self.path, overwrite)  # again, under the lock: the path may have changed meanwhile
            if self.path.is_dir() and any(self.path.iterdir()):
                self._move_aside()
            self._created = not self.path.exists()
            self.path.mkdir(exist_ok=True)
            self._ours = True
        except BaseException:
            self.rollback()
            raise
        self._hold_folder()

    @classmethod
    def existing(cls, path: str | Path) -> Claim:
        """An existing container, locked for this process (to add what its run left to make)."""
        claim = cls.__new__(cls)
        claim.path = Path(path)
        claim._aside = None
        claim._created = claim._ours = False
        claim.lock = ContainerLock(claim.path)
        claim._hold_folder()
        return claim

    def _hold_folder(self) -> None:
        # an open descriptor keeps the folder's inode allocated even if the folder is deleted, so a
        # new folder at the same path (another tool's) can never look like ours
        self._folder_fd: int | None = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)

    def _move_aside(self) -> None:
        aside = self.path.with_name(f".{self.path.name}.replaced-{os.getpid()}")
        os.rename(self.path, aside)
        self._aside = aside
        logger.info("Moved %s aside to %s until the new run's container exists", self.path, aside)

    def commit(self) -> None:
        """The new container exists: delete the replaced one."""
        if self._aside is not None:
            shutil.rmtree(self._aside, ignore_errors=True)
            logger.info("Replaced the earlier run at %s", self.path)
            self._aside = None

    def rollback(self) -> None:
        """Creating the new container failed: remove what this claim made, put the old one back."""
        if self._ours:  # the folder did not exist, was empty, or its old content is aside
            if self._created:
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                for entry in self.path.iterdir():
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(
                        missing_ok=True
                    )
        if self._aside is not None:
            os.rename(self._aside, self.path)
            self._aside = None
        self.lock.release()

    def intact(self) -> bool:
        """Whether the container is still the folder this claim made, with its lock in place."""
        fd: int | None = getattr(self, "_folder_fd", None)
        if fd is None:
            return False  # released: this claim writes nothing more
        try:
            now, ours = os.stat(self.path), os.fstat(fd)
        except OSError:
            return False
        return (
            (now.st_ino, now.st_dev) == (ours.st_ino, ours.st_dev) and ours.st_nlink > 0 and self.lock.held()
        )

    def release(self) -> None:
        """The run is over: other writers may open the container (idempotent)."""
        fd: int | None = getattr(self, "_folder_fd", None)
        if fd is not None:
            os.close(fd)
            self._folder_fd = None
        self.lock.release()
