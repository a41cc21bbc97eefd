"""Every write into a run goes through its guard: the container must still be the one this run claimed,
and a failed write is named as a storage problem, with the free space and what is kept."""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import ContainerChangedError, StorageError
from .claim import Claim


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1000, as disk tools show them)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class WriteGuard:
    """The checks around each write of one claimed container."""

    def __init__(self, claim: Claim):
        self.claim = claim
        #: the container's resolved path
        self.path: Path = claim.path

    def check(self) -> None:
        """Stop writing (:class:`ContainerChangedError`) if the container is no longer ours."""
        if not self.claim.intact():
            raise ContainerChangedError(
                f"{self.path} was deleted, moved or replaced while this run wrote it (by hand or by another "
                "program): stopping so nothing is written into the wrong place. Data measured before that "
                "is in the container that was there, if it still exists."
            )

    @contextlib.contextmanager
    def guarded(self, check: bool = True) -> Iterator[None]:
        """A read or write: the container checked first (``check``); an ``OSError`` named as a storage
        problem."""
        if check:
            self.check()
        try:
            yield
        except OSError as e:
            raise self.error(e) from e

    def error(self, e: OSError, wrote: bool = True) -> StorageError:
        """``e`` in the user's words: the disk is full, or what failed; the free space; what is kept."""
        try:
            free = shutil.disk_usage(self.path.parent if not self.path.exists() else self.path).free
            space = f"{human_bytes(free)} free"
        except OSError:
            space = "free space unknown"
        what = "the disk is full" if e.errno == errno.ENOSPC else str(e)
        kept = "Data written so far is readable." if wrote else "Nothing was written; choose another output."
        return StorageError(f"Writing {self.path} failed: {what} ({space}). {kept}")
