"""Which process downloads a blob: a byte-range lock per blob, in one shared file.

``tmp/locks/blobs.lock`` is opened once per process. The lock on blob D is a
POSIX record lock on one byte of that file, at an offset taken from D's
digest. Why this shape:

- the kernel drops a process's record locks when it dies, ``kill -9``
  included: a dead process never blocks anyone, and no lock file is ever stale;
- one file for every blob: no file is created per download (creating one costs
  ~50 µs on ext4, and a sync of 2000 small files would pay it 2000 times);
- record locks belong to a process, not a thread, so the threads of one
  process are kept apart by an in-process table first.

Record locks have one trap: closing any descriptor of the file drops them all.
The file is opened once and never closed while the process lives. On NFS the
locks go through lockd. Where there is no ``fcntl`` (Windows) downloads are
not locked: still correct, since every writer publishes verified bytes
atomically, only maybe done twice.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no record locks (see above)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "blobs.lock"


def _offset(digest: str) -> int:
    return int(digest[:15], 16)  # 60 bits: collisions are astronomically rare, and would only serialize


class BlobLocks:
    """The blob locks of one cache, for this process."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._fd: int | None = None
        self._unavailable = False
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def try_acquire(self, digest: str) -> bool | None:
        """True: ours now. False: another thread or process holds it. None: this
        filesystem or platform cannot lock."""
        # The table is updated under the thread lock; the system call is made
        # outside it, so that the workers do not queue behind each other's.
        with self._lock:
            if digest in self._held:
                return False
            fd = self._file()
            if fd is None:
                return None
            self._held.add(digest)  # this thread's claim, before the process's lock
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _offset(digest))
        except OSError as error:
            with self._lock:
                self._held.discard(digest)
                if not isinstance(error, (BlockingIOError, PermissionError)):  # not EAGAIN/EACCES: cannot lock here
                    self._unavailable = True
                    return None
            return False  # held by another process
        return True

    def release(self, digest: str) -> None:
        with self._lock:
            if digest not in self._held or self._fd is None:
                return
            fd = self._fd
        # The process's lock goes first, the thread's claim after: another thread
        # of this process must not lock the byte while it is still ours to unlock.
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _offset(digest))
        with self._lock:
            self._held.discard(digest)

    def _file(self) -> int | None:
        if self._fd is None and not self._unavailable:
            if fcntl is None:
                self._unavailable = True
                return None
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd


_registry: dict[str, BlobLocks] = {}
_registry_lock = threading.Lock()


def for_folder(folder: Path) -> BlobLocks:
    """The one BlobLocks of a cache in this process (two would drop each other's locks)."""
    key = str(folder)
    with _registry_lock:
        locks = _registry.get(key)
        if locks is None:
            locks = _registry[key] = BlobLocks(folder)
        return locks


def _forget_after_fork() -> None:
    """A forked child holds none of its parent's record locks."""
    global _registry_lock
    _registry.clear()
    _registry_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
