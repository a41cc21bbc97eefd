"""Claiming an output container: one writer at a time, and nothing but a container is replaced.

mm-deepz never deletes what it did not write. An output path is used only when it does not
exist, is an empty folder, or is an mm-deepz container (a zarr group whose root attributes
hold ``mm_deepz``) that the user asked to replace. A container is never made inside another zarr
hierarchy (a run, a chunk folder, any zarr group), and one that holds another run is never
replaced. A replaced container is moved aside and deleted only once the new run has written its
first measured plane: a run that cannot start (a setting the camera refuses, a full disk) puts
the old one back.

Every path is resolved first (symlinks, ``..``), so that each alias of a folder names it once.
While a run writes, it holds an exclusive ``flock`` on the hidden file ``.NAME.lock`` beside
the container ``NAME`` (beside, not inside: zarr warns about files in a hierarchy that are not
part of it), and one on the container folder itself, which every path to it shares (a link, a
bind mount). The kernel releases both when the process ends, however it ends (kill -9
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
import threading
import time
from pathlib import Path
from typing import NoReturn

from ..errors import DeepZError, StorageError

logger = logging.getLogger(__name__)


#: the root attribute of a run's container, and of a pairs dataset
RUN_KEY = "mm_deepz"
PAIRS_KEY = "mm_deepz_pairs"
#: the files that make a folder part of a zarr hierarchy (zarr v3, v2 groups and arrays)
ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
#: how often a writer waiting for a container's lock tries again (s)
LOCK_POLL_S = 0.2
#: the longest file name most file systems take (bytes)
NAME_MAX = 255


def real_path(path: str | Path) -> Path:
    """``path`` with symlinks and ``..`` resolved, so that every alias of a folder names it once."""
    return Path(os.path.realpath(path))


def lock_path(container: Path) -> Path:
    """The lock file of a container path (of its resolved path: one lock file for every alias)."""
    container = real_path(container)
    return container.parent / f".{container.name}.lock"


class OutputExistsError(DeepZError):
    """The output path already holds data that may not be replaced (or replacing was not asked for)."""


class ContainerLockedError(DeepZError):
    """The container cannot be locked for writing: another process writes it."""


class OutputPathError(StorageError):
    """No container can be made at the output path: a file in the way, inside another zarr hierarchy,
    an unwritable folder, a name too long."""


def enclosing_hierarchy(path: str | Path) -> Path | None:
    """The outermost folder above ``path`` (resolved) that belongs to a zarr hierarchy (a run, any zarr
    group or array; a path inside one of its image or chunk folders names the run), or None."""
    found = None
    for parent in real_path(path).parents:
        if any((parent / marker).is_file() for marker in ZARR_MARKERS):
            found = parent
    return found


def held_inside(container: Path) -> list[Path]:
    """Other runs, and other writers' lock files, inside ``container``: what replacing it would destroy
    (runs nested before nesting was refused, or put there by hand). Links are not followed."""
    found: list[Path] = []
    for folder, subfolders, files in os.walk(container):
        here = Path(folder)
        found += [here / f for f in files if f.startswith(".") and f.endswith(".lock")]
        for name in list(subfolders):
            if is_container(here / name):
                found.append(here / name)
                subfolders.remove(name)
    return found


def replaced_aside(path: Path) -> list[Path]:
    """Earlier runs that a replacing run moved aside and neither deleted nor put back (it was killed
    before its first plane)."""
    path = real_path(path)
    try:
        return sorted(path.parent.glob(f".{path.name}.replaced-*"))
    except OSError:
        return []


def _marks(path: str | Path) -> set[str]:
    """The mm-deepz marks (:data:`RUN_KEY`, :data:`PAIRS_KEY`) among the root attributes of the zarr at
    ``path`` (none: not a container mm-deepz wrote, or not readable)."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
        return {key for key in (RUN_KEY, PAIRS_KEY) if key in attrs}
    except (OSError, ValueError, AttributeError, RecursionError, TypeError):
        return set()


def is_container(path: str | Path) -> bool:
    """Whether ``path`` is a container written by mm-deepz: a run (its root attributes hold
    ``mm_deepz``) or a pairs dataset (``mm_deepz_pairs``)."""
    return bool(_marks(path))


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is an mm-deepz run (not a pairs dataset, not another tool's zarr)."""
    return RUN_KEY in _marks(path)


class ContainerLock:
    """An exclusive lock on a container path, released by the kernel when its process dies: on the
    lock file beside it, and on the folder itself once it exists (shared by every path to it)."""

    def __init__(self, container: Path, wait_s: float = 0.0):
        """Take the lock, or raise :class:`ContainerLockedError` when another process holds it (after
        waiting up to ``wait_s`` seconds for it to be released: writers that take a run in turn)."""
        self.container = real_path(container)
        self._path = lock_path(self.container)
        self._folder_fd: int | None = None
        try:
            self._file = open(self._path, "a+")  # noqa: SIM115 - held for the lock's lifetime
        except OSError as e:
            raise OutputPathError(
                f"{self._path.parent} does not take new files ({e.strerror or e}), so {self.container} "
                "cannot be written there: choose another output."
            ) from e
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._refuse()
                time.sleep(LOCK_POLL_S)
        self._file.seek(0)
        self._file.truncate()
        self._file.write(
            f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        self._file.flush()
        self.inode = os.fstat(self._file.fileno()).st_ino
        if self.container.is_dir():
            try:
                self.lock_folder()
            except BaseException:
                self.release()
                raise

    def _refuse(self) -> NoReturn:
        self._file.seek(0)
        holder = self._file.read().strip() or "an unknown process"
        self._file.close()
        raise ContainerLockedError(
            f"{self.container} is being written by {holder}: wait for that run to end, or choose another "
            "output."
        ) from None

    @property
    def folder_fd(self) -> int | None:
        """The open, locked container folder (None until it exists, and once released)."""
        return self._folder_fd

    def lock_folder(self) -> None:
        """Lock the container folder itself (idempotent): a writer reaching it through another path (a
        link, a bind mount) is refused here, whatever lock file its path names."""
        fd = os.open(self.container, os.O_RDONLY | os.O_DIRECTORY)
        if self._folder_fd is not None:
            if _same_inode(os.fstat(fd), os.fstat(self._folder_fd)):
                os.close(fd)
                return
            os.close(self._folder_fd)
            self._folder_fd = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ContainerLockedError(
                f"{self.container} is being written by another process, through another path to the same "
                "folder (a link or a mount): wait for that run to end, or choose another output."
            ) from None
        self._folder_fd = fd

    def detach_folder(self) -> int | None:
        """Hand over the locked folder's descriptor (a container being moved aside keeps its lock)."""
        fd, self._folder_fd = self._folder_fd, None
        return fd

    def held(self) -> bool:
        """Whether the lock file is still the one this lock holds (not deleted or replaced)."""
        try:
            return os.stat(self._path).st_ino == self.inode
        except OSError:
            return False

    def release(self) -> None:
        """Let other writers in (the lock file stays: removing it would race with them); idempotent."""
        if self._folder_fd is not None:
            os.close(self._folder_fd)  # closing the last descriptor releases its flock
            self._folder_fd = None
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


def _same_inode(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _check_path(path: Path, overwrite: bool) -> None:
    """Refuse (:class:`OutputExistsError`, :class:`OutputPathError`) an output that may not be written;
    touches nothing."""
    here = Path.cwd().resolve()
    target = real_path(path)
    if target == here or target in here.parents:
        raise OutputExistsError(
            f"{path} is the current folder or one that holds it: choose a new name ending in "
            ".ome.zarr for the output."
        )
    if len(target.name.encode()) > NAME_MAX:
        raise OutputPathError(
            f"The output's name is {len(target.name.encode())} bytes long; file systems take at most "
            f"{NAME_MAX}: choose a shorter name."
        )
    above = next(p for p in target.parents if p.exists() or p == p.parent)
    if not above.is_dir():
        raise OutputPathError(
            f"{path} cannot be made: {above} is a file, so no output can be made under it. Choose another "
            "output."
        )
    if not target.exists() and not os.access(above, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{above} is not writable, so {path} cannot be made there: choose another output."
        )
    if (outer := enclosing_hierarchy(target)) is not None:
        raise OutputPathError(
            f"{path} is inside {'the mm-deepz run' if is_container(outer) else 'the zarr hierarchy'} "
            f"{outer}: a run is never written inside another container. Choose an output outside it."
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
        if inside := held_inside(target):
            raise OutputExistsError(
                f"{path} holds another run or another writer's lock ({inside[0]}"
                f"{f' and {len(inside) - 1} more' if len(inside) > 1 else ''}): mm-deepz never replaces "
                "it. Move what is inside out first, or choose another output."
            )
        if aside := replaced_aside(target):
            raise OutputExistsError(
                f"An earlier run at {path} was moved aside by a replacing run that ended before its first "
                f"plane, and is kept at {aside[0]}: move it back (or away) before replacing {path} again."
            )


def preflight_output(path: str | Path, overwrite: bool = False) -> None:
    """Refuse an output that may not be written, before anything moves: :class:`ContainerLockedError`
    while another run writes it, :class:`OutputExistsError` or :class:`OutputPathError` for anything
    else in the way. Changes nothing but the output's lock file, where its folder exists (taking it
    also proves that the folder takes files)."""
    path = Path(path)
    if is_container(path):
        ContainerLock(path).release()  # raises while another process writes it
    _check_path(path, overwrite)
    if real_path(path).parent.is_dir():
        ContainerLock(path).release()


def free_space(path: str | Path) -> int | None:
    """Bytes free on the disk an output at ``path`` would go to (its nearest existing folder); None if
    that cannot be told."""
    target = real_path(path)
    above = next((p for p in (target, *target.parents) if p.is_dir()), None)
    try:
        return shutil.disk_usage(above).free if above is not None else None
    except OSError:
        return None


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
    """An output folder this process may write: locked, and a replaced container held aside until the
    new run has data (:meth:`commit`), or put back if it never gets any (:meth:`rollback`)."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        preflight_output(path, overwrite)
        #: the resolved path: what the run writes, whichever alias named it
        self.path = real_path(path)
        self._aside: Path | None = None
        self._aside_fd: int | None = None
        self._created = False
        #: whether the folder's content is this claim's (removed again if the run writes nothing)
        self._ours = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputPathError(
                f"Cannot make the folder {self.path.parent} for the output: {e.strerror or e}. Choose "
                "another output."
            ) from e
        self.lock = ContainerLock(self.path)  # held from here: no other writer can slip in
        try:
            _check_path(self.path, overwrite)  # again, under the lock: the path may have changed meanwhile
            if self.path.is_dir() and any(self.path.iterdir()):
                self._move_aside()
            self._created = not self.path.exists()
            self.path.mkdir(exist_ok=True)
            self._ours = True
            self.lock.lock_folder()
        except OSError as e:
            self.rollback()
            raise OutputPathError(
                f"Cannot make the output {self.path}: {e.strerror or e}. Choose another output."
            ) from e
        except BaseException:
            self.rollback()
            raise

    @classmethod
    def existing(cls, path: str | Path, wait_s: float = 0.0) -> Claim:
        """An existing container, locked for this process (to add what its run left to make), waiting up
        to ``wait_s`` seconds for another writer to let it go."""
        claim = cls.__new__(cls)
        claim.path = real_path(path)
        claim._aside = None
        claim._aside_fd = None
        claim._created = claim._ours = False
        claim.lock = ContainerLock(claim.path, wait_s)
        return claim

    @property
    def replacing(self) -> Path | None:
        """Where the container this claim replaces waits until the new run has data (None: none)."""
        return self._aside

    def _move_aside(self) -> None:
        aside = self.path.with_name(f".{self.path.name}.replaced-{os.getpid()}")
        self._aside_fd = self.lock.detach_folder()  # its lock stays with it until it is gone or back
        os.rename(self.path, aside)
        self._aside = aside
        logger.info("Moved %s aside to %s until the new run has measured data", self.path, aside)

    def commit(self) -> None:
        """The new run has data: delete the replaced container (in the background; idempotent)."""
        if self._aside is None:
            return
        aside, fd = self._aside, self._aside_fd
        self._aside = self._aside_fd = None

        def remove() -> None:
            shutil.rmtree(aside, ignore_errors=True)
            if fd is not None:
                os.close(fd)

        threading.Thread(target=remove, name="mm-deepz-remove-replaced").start()
        logger.info("Replacing the earlier run at %s", self.path)

    def rollback(self) -> None:
        """The new run has no data (it could not start, or measured nothing): remove what this claim made
        and put the replaced container back; the lock is released (idempotent)."""
        if self._ours:  # the folder did not exist, was empty, or its old content is aside
            self._ours = False
            if self._created:
                shutil.rmtree(self.path, ignore_errors=True)
            elif self.path.is_dir():
                for entry in self.path.iterdir():
                    shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(
                        missing_ok=True
                    )
        if self._aside is not None:
            if self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()
            os.rename(self._aside, self.path)
            logger.info("Put the earlier run back at %s", self.path)
            self._aside = None
        if self._aside_fd is not None:
            os.close(self._aside_fd)
            self._aside_fd = None
        self.lock.release()

    def intact(self) -> bool:
        """Whether the container is still the folder this claim made, with its lock in place."""
        fd = self.lock.folder_fd
        if fd is None:
            return False  # released: this claim writes nothing more
        try:
            now, ours = os.stat(self.path), os.fstat(fd)
        except OSError:
            return False
        return _same_inode(now, ours) and ours.st_nlink > 0 and self.lock.held()

    def release(self) -> None:
        """The run is over: other writers may open the container (idempotent)."""
        self.lock.release()
