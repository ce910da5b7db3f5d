"""The content-addressed cache: verified, read-only blobs shared by every project.

Layout under the cache root (``MODELSYNC_CACHE_DIR``, else the platform's user
cache folder)::

    CACHEDIR.TAG
    blobs/blake3/ab/cdef…    one read-only file per content, named by its blake3
    tmp/                     unique temp files while writing
    tmp/partial/<blake3>     a download in progress, and its journal (<blake3>.json)
    tmp/locks/blobs.lock     one byte-range lock per blob being downloaded (locks.py)

A blob is written once: to a temp file in the same filesystem, hashed while it
is written, checked against what was expected, made read-only, then moved into
place with ``os.replace``. Readers therefore only ever see complete, verified
blobs, whatever is killed when.

Processes sharing the cache take a lock per blob (``Store.claim``) so that each
blob is downloaded once. The lock is an OS record lock (``locks.py``): the
kernel drops it when its owner dies, even by ``kill -9``, so a dead process
never blocks anyone. A live owner that makes no progress is waited for only so long;
after that the waiter downloads into a temp file of its own. Correctness never
depends on the lock: two processes writing the same blob both succeed with the
same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import stat
import time
from pathlib import Path
from typing import Callable, NamedTuple

import blake3

from . import _env, _tempfile, locks
from .errors import IntegrityError, Mismatch

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by modelsync.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def default_root() -> Path:
    configured = _env.get(_env.CACHE_DIR)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("modelsync", appauthor=False))


class Expected(NamedTuple):
    """What the bytes must be; None means "not pinned yet" (at lock time)."""

    size: int | None = None
    blake3: str | None = None
    sha256: str | None = None


class Digests(NamedTuple):
    size: int
    blake3: str
    sha256: str | None = None


class BlobWriter:
    """Streams bytes into a unique temp file, hashing them on the way in."""

    def __init__(self, store: "Store", expected: Expected, *, want_sha256: bool = False) -> None:
        self.store = store
        self.expected = expected
        self._want_sha256 = want_sha256 or expected.sha256 is not None
        fd, name = _tempfile.mkstemp(store.tmp_dir, prefix="blob-", suffix=".part")
        self.temp_path = Path(name)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._start()

    def _start(self) -> None:
        self.size = 0
        # AUTO hashes large updates (the 1 MiB download chunks) on several threads.
        self._blake3 = blake3.blake3(max_threads=blake3.blake3.AUTO)
        self._sha256 = hashlib.sha256() if self._want_sha256 else None

    def write(self, data: bytes | memoryview) -> None:
        size = self.size + len(data)
        if self.expected.size is not None and size > self.expected.size:
            raise IntegrityError(Mismatch("size", f"{self.expected.size} bytes", f"more than {self.expected.size} bytes"))
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self._blake3.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        self.size = size

    def restart(self) -> None:
        """Forget everything written so far (e.g. a server ignored a Range request)."""
        self._file.seek(0)
        self._file.truncate()
        self._start()

    def digests(self) -> Digests:
        sha256 = self._sha256.hexdigest() if self._sha256 is not None else None
        return Digests(self.size, self._blake3.hexdigest(), sha256)

    def commit(self) -> Digests:
        """Check the bytes against what was expected and publish the blob."""
        try:
            self._file.close()
            found = self.digests()
            expected = self.expected
            if expected.size is not None and found.size != expected.size:
                raise IntegrityError(Mismatch("size", f"{expected.size} bytes", f"{found.size} bytes"))
            if expected.blake3 is not None and found.blake3 != expected.blake3:
                raise IntegrityError(Mismatch("blake3", expected.blake3, found.blake3))
            if expected.sha256 is not None and found.sha256 != expected.sha256:
                raise IntegrityError(Mismatch("sha256", expected.sha256, found.sha256 or "?"))
            self.store.publish(self.temp_path, found.blake3)
            return found
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the temp file (a no-op once it was published)."""
        if not self._file.closed:
            self._file.close()
        self.temp_path.unlink(missing_ok=True)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


class Claim:
    """The outcome of ``Store.claim``: the blob is there, or this process may write it.

    ``owned``: this process holds the blob's lock, so the shared partial download
    (``tmp/partial/<blake3>``) is its own to resume and extend. Not owned: write
    a private temp file (the lock is held by a stalled process, or the
    filesystem cannot lock)."""

    __slots__ = ("present", "owned", "_release")

    def __init__(self, present: bool = False, owned: bool = False, _release: Callable[[], None] | None = None) -> None:
        self.present = present
        self.owned = owned
        self._release = _release

    def __repr__(self) -> str:
        return f"Claim(present={self.present}, owned={self.owned})"

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class Store:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_root()).absolute()
        self.blobs_dir = self.root / "blobs" / "blake3"
        self.tmp_dir = self.root / "tmp"
        self.partial_dir = self.tmp_dir / "partial"
        self.locks_dir = self.tmp_dir / "locks"
        self._prepared = False  # the layout exists (prepare ran in this process)
        self._device: int | None = None
        self._blobs = str(self.blobs_dir)
        self._partials = str(self.partial_dir)
        self._tmp = str(self.tmp_dir)
        self._serial = itertools.count()  # next() is atomic: threads share it without a lock
        self._tag_pid = 0
        self._tag_value = ""

    def blob_path(self, digest: str) -> Path:
        return Path(self.blob_file(digest))

    def blob_file(self, digest: str) -> str:
        """``blob_path`` as a string: what the per-file hot paths use (pathlib costs
        about 10 µs a path, which 2000 small files a sync notice)."""
        return f"{self._blobs}{os.sep}{digest[:2]}{os.sep}{digest[2:]}"

    def partial_file(self, digest: str) -> str:
        return f"{self._partials}{os.sep}{digest}"

    @property
    def device(self) -> int:
        """The device the blobs are on (where a view can hardlink them)."""
        if self._device is None:
            self.prepare()
            self._device = self.blobs_dir.stat().st_dev
        return self._device

    def partial_path(self, digest: str) -> Path:
        return self.partial_dir / digest

    def journal_path(self, digest: str) -> Path:
        return self.partial_dir / f"{digest}.json"

    def claim(
        self, digest: str, size: int, *, stall_limit: float, check_cancelled: Callable[[], None] = lambda: None
    ) -> Claim:
        """Wait until this process may download the blob, or until it is in the store.

        While another process holds the lock we watch its partial download; if
        it makes no progress for ``stall_limit`` seconds we stop waiting and
        download it ourselves, into a private temp file."""
        last_seen: object = None
        last_change = time.monotonic()
        delay = 0.005
        while True:
            claim = self.try_claim(digest, size)
            if claim is not None:
                if claim.owned and last_seen is not None and self.has(digest, size):  # finished by the owner we waited for
                    claim.release()
                    return Claim(present=True)
                return claim
            seen = ("waiting", _stat_key(self.partial_path(digest)), _stat_key(self.journal_path(digest)))
            now = time.monotonic()
            if seen != last_seen:
                last_seen, last_change = seen, now
            elif now - last_change > stall_limit:
                return Claim()  # the holder is stuck: not ours, so a private temp file
            check_cancelled()
            time.sleep(delay)
            delay = min(0.2, delay * 2)

    def try_claim(self, digest: str, size: int) -> Claim | None:
        """``claim`` without waiting: None while another thread or process holds the blob."""
        self.prepare()
        if self.has(digest, size):
            return Claim(present=True)
        blob_locks = locks.for_folder(self.locks_dir)
        acquired = blob_locks.try_acquire(digest)
        if acquired is None:  # cannot lock here: go on without (correct, maybe twice the work)
            return Claim()
        if not acquired:
            return None
        return Claim(owned=True, _release=lambda: blob_locks.release(digest))

    def has(self, digest: str, size: int) -> bool:
        """True when the blob looks intact: the right size and still read-only.

        Stat only, no hashing. A blob someone made writable (to edit a
        hardlinked view file, say) is not trusted: it will be fetched again."""
        try:
            info = os.stat(self.blob_file(digest))
        except OSError:
            return False
        return info.st_size == size and not info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)

    def prepare(self) -> None:
        """Create the layout and the CACHEDIR.TAG (idempotent, cheap)."""
        if self._prepared:
            return
        for folder in (self.tmp_dir, self.blobs_dir, self.partial_dir, self.locks_dir):
            folder.mkdir(parents=True, exist_ok=True)
        tag = self.root / "CACHEDIR.TAG"
        if not tag.exists():
            fd, name = _tempfile.mkstemp(self.tmp_dir, prefix="tag-")
            with os.fdopen(fd, "w") as handle:
                handle.write(CACHEDIR_TAG)
            os.chmod(name, 0o644)
            os.replace(name, tag)
        self._prepared = True

    def clean_stale_temp(self, max_age: float = 24 * 3600, partial_age: float = 7 * 24 * 3600) -> None:
        """Remove temp files that killed processes left behind.

        Only old ones: a younger one may belong to a sync running right now. A
        partial download is kept a week, for a later sync to resume."""
        now = time.time()
        for folder, age in ((self.tmp_dir, max_age), (self.partial_dir, partial_age)):  # never locks/: it is in use
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.path in (str(self.partial_dir), str(self.locks_dir)):
                        continue
                    if entry.stat(follow_symlinks=False).st_mtime >= now - age:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        import shutil  # here only: its import (with bz2 and lzma) costs every sync ~4 ms

                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                except OSError:
                    continue

    def writer(self, expected: Expected, *, want_sha256: bool = False) -> BlobWriter:
        self.prepare()
        return BlobWriter(self, expected, want_sha256=want_sha256)

    def put(self, data: bytes, digest: str) -> str:
        """Publish bytes already verified in memory (a small file, whole): one write
        into a temp file of this process's own, then ``publish``."""
        self.prepare()
        # A name from a counter, not mkstemp's random tries (a few µs that 2000 files notice);
        # the pid and a random tag keep processes, and hosts sharing the cache, apart.
        temp = f"{self._tmp}{os.sep}blob-{self._tag}-{next(self._serial)}.part"
        # Created read-only, as a blob must be, yet open for writing: a new file's mode
        # does not limit the descriptor that creates it (no chmod a file).
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _READ_ONLY)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            return self._move_into_place(temp, digest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)  # nothing half-written stays behind (a full disk, say)
            raise
        finally:
            os.close(fd)

    @property
    def _tag(self) -> str:
        if self._tag_pid != _this_process:  # a forked worker: a tag of its own
            self._tag_pid = _this_process
            self._tag_value = f"{_this_process}-{os.urandom(4).hex()}"
        return self._tag_value

    def publish(self, temp_path: str | Path, digest: str, *, fd: int | None = None) -> str:
        """Make ``temp_path`` the blob ``digest``: read-only, atomically. With the
        file's open ``fd`` the mode is set through it (and the caller closes it)."""
        if fd is not None:
            os.fchmod(fd, _READ_ONLY)
        else:
            os.chmod(temp_path, _READ_ONLY)
        return self._move_into_place(temp_path, digest)

    def _move_into_place(self, temp_path: str | Path, digest: str) -> str:
        # An existing blob is replaced too: these bytes were just verified, and the
        # old file may be damaged (fetching again is how a damaged blob is repaired).
        # Readers of the old file keep their open handle on it.
        target = self.blob_file(digest)
        try:
            os.replace(temp_path, target)
        except FileNotFoundError:
            # Its blobs/blake3/<ab> folder is not there yet (a new cache: 256 of them, made
            # as needed). Asking first would cost a system call a blob, and each worker
            # process a mkdir and a stat per folder that another one made already.
            if not os.path.exists(temp_path):
                raise
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(temp_path, target)
        return target


_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


# This process's pid, kept current across fork: os.getpid() is a system call,
# and ``put`` asks once a file.
_this_process = os.getpid()


def _after_fork() -> None:
    global _this_process
    _this_process = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)
