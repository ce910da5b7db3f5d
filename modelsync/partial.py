"""A download in progress: the bytes so far, and a journal of how far each part got.

A partial that this process owns (it holds the blob's lock) lives at
``tmp/partial/<blake3>`` beside its journal ``<blake3>.json``, so the next run,
after Ctrl-C, ``kill -9`` or a full disk, continues where this one stopped.
A private partial (a unique temp name, no journal) serves a download whose
shared partial another process owns, and lock-time downloads whose digest is
not known yet.

The journal records the URL, the size, the server's validator (a strong ETag,
else Last-Modified: a resumed request sends it as ``If-Range``, so bytes of two
versions of a file are never mixed) and, per part, the bytes written. It is
saved after the bytes it counts were written, so it never claims more than the
file holds; a journal that does not fit its file is ignored and the download
starts over. The final blake3 check is what vouches for the bytes.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

from . import _tempfile
from ._units import human_size
from .errors import OperationalError
from .store import Expected, Store

JOURNAL_VERSION = 1
MAX_PART = 64 << 20
RESUMABLE = 1 << 20  # a smaller file gets no journal: starting it over costs less than keeping one


class Part:
    """Bytes [start, end) of the file; ``done`` of them, from ``start``, are written."""

    __slots__ = ("start", "end", "done")

    def __init__(self, start: int, end: int | None, done: int = 0) -> None:
        self.start = start
        self.end = end  # None: the size is not known yet (lock time); read to the end
        self.done = done

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Part):
            return NotImplemented
        return (self.start, self.end, self.done) == (other.start, other.end, other.done)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Part(start={self.start}, end={self.end}, done={self.done})"

    @property
    def offset(self) -> int:
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.end is not None and self.offset >= self.end


def layout(size: int, *, split_size: int, jobs: int) -> list[Part]:
    """Parts for a new download: one for a file under ``split_size``, else about
    four per connection (so a slow part does not hold the end back), each
    between ``split_size / 8`` and 64 MiB."""
    if size < split_size or jobs < 2:
        return [Part(0, size)]
    part = max(split_size // 8, 1, min(MAX_PART, -(-size // (jobs * 4))))
    return [Part(start, min(start + part, size)) for start in range(0, size, part)]


class DiskError(OperationalError):
    """Writing into the cache failed (a full disk, a read-only mount)."""


class Partial:
    def __init__(self, store: Store, path: str, journal: Path | None, size: int | None, parts: list[Part], url: str) -> None:
        self.store = store
        self.path = path
        self.journal = journal
        self.size = size
        self.parts = parts
        self.url = url
        self.validator: str | None = None
        self.journaled = False  # whether a journal of this partial is on disk (to delete at the end)
        self._write_lock = threading.Lock()  # only where os.pwrite is missing (Windows)
        resuming = any(part.done for part in parts)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | (0 if resuming else os.O_TRUNC)
        self.fd = os.open(path, flags, 0o644)

    # -- opening ----------------------------------------------------------------

    @classmethod
    def open(cls, store: Store, url: str, expected: Expected, *, owned: bool, split_size: int, jobs: int) -> "Partial":
        """The shared partial of ``expected``'s blob, resumed when its journal fits,
        when ``owned``; else a private one."""
        store.prepare()
        size = expected.size
        if not owned or expected.blake3 is None or size is None:
            fd, name = _tempfile.mkstemp(store.tmp_dir, prefix="blob-", suffix=".part")
            os.close(fd)
            parts = [Part(0, size)] if size is None else layout(size, split_size=split_size, jobs=jobs)
            return cls(store, name, None, size, parts, url)
        path = store.partial_file(expected.blake3)
        if size < RESUMABLE:
            return cls(store, path, None, size, [Part(0, size)], url)
        journal = store.journal_path(expected.blake3)
        try:
            record = journal.read_text(encoding="utf-8")
        except FileNotFoundError:
            record = None  # the usual case: nothing to resume, nothing to delete
        except OSError:
            record = ""
        resumed = _resume(path, record, size, url) if record else None
        if resumed is not None:
            parts, validator = resumed
            partial = cls(store, path, journal, size, parts, url)
            partial.validator = validator
            partial.journaled = True
            return partial
        if record is not None:
            journal.unlink(missing_ok=True)
        return cls(store, path, journal, size, layout(size, split_size=split_size, jobs=jobs), url)

    @property
    def split(self) -> bool:
        return len(self.parts) > 1

    @property
    def written(self) -> int:
        return sum(part.done for part in self.parts)

    def preallocate(self) -> None:
        """Reserve the whole file now (parts write at their offsets), so a full disk
        shows at the start rather than at 90 %."""
        assert self.size is not None
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self.fd, 0, self.size)
            else:
                os.ftruncate(self.fd, self.size)
        except OSError as error:
            if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                os.ftruncate(self.fd, self.size)  # a filesystem without fallocate: sparse is fine
            else:
                raise self._disk_error(error) from None

    # -- bytes --------------------------------------------------------------------

    def write_at(self, offset: int, data: memoryview | bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                if hasattr(os, "pwrite"):
                    written = os.pwrite(self.fd, view, offset)
                else:
                    with self._write_lock:
                        os.lseek(self.fd, offset, os.SEEK_SET)
                        written = os.write(self.fd, view)
                view = view[written:]
                offset += written
        except OSError as error:
            raise self._disk_error(error) from None

    def read_at(self, offset: int, size: int) -> bytes:
        if hasattr(os, "pread"):
            return os.pread(self.fd, size, offset)
        with self._write_lock:
            os.lseek(self.fd, offset, os.SEEK_SET)
            return os.read(self.fd, size)

    def restart(self) -> None:
        """Forget every byte (the server's file changed, or it ignored Range): one
        part, from zero."""
        os.ftruncate(self.fd, 0)
        self.parts = [Part(0, self.size)]
        self.validator = None
        self._drop_journal()

    def _disk_error(self, error: OSError) -> DiskError:
        remaining = None if self.size is None else self.size - self.written
        if error.errno == errno.ENOSPC:
            need = f"; {human_size(remaining)} more needed for this file" if remaining else ""
            return DiskError(
                f"no space left on the device of the cache ({self.store.root}){need}",
                hint="free some space (or point MODELSYNC_CACHE_DIR at a larger disk) and sync again: it resumes where it stopped",
            )
        return DiskError(
            f"cannot write into the cache ({self.path}): {error.strerror or error}",
            hint="check permissions and free space of the cache (MODELSYNC_CACHE_DIR)",
        )

    # -- the journal and the end of a partial -----------------------------------

    def save(self) -> None:
        """Write the journal (only a shared partial has one), atomically."""
        if self.journal is None or self.size is None:
            return
        record = {
            "version": JOURNAL_VERSION,
            "url": self.url,
            "size": self.size,
            "validator": self.validator,
            "parts": [[part.start, part.end, part.done] for part in self.parts],
        }
        temp = self.journal.with_name(f"{self.journal.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            temp.write_text(json.dumps(record), encoding="utf-8")
            os.replace(temp, self.journal)
            self.journaled = True
        except OSError:
            temp.unlink(missing_ok=True)  # a journal is a convenience: without it, the next run starts over

    def publish(self, digest: str) -> None:
        if not hasattr(os, "fchmod"):  # Windows: an open file cannot be renamed
            _close(self.fd)
            self.store.publish(self.path, digest)
        else:
            try:
                self.store.publish(self.path, digest, fd=self.fd)  # the mode is set through the open file
            finally:
                _close(self.fd)
        self._drop_journal()

    def discard(self) -> None:
        """Drop the bytes and the journal (they did not verify, or nobody can resume them)."""
        _close(self.fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._drop_journal()

    def _drop_journal(self) -> None:
        if self.journal is not None and self.journaled:
            self.journal.unlink(missing_ok=True)
            self.journaled = False

    def suspend(self) -> None:
        """Stop for now: keep a shared partial (and its journal) for the next run."""
        if self.journal is None:
            self.discard()
            return
        self.save()
        _close(self.fd)


def _resume(path: str, text: str, size: int, url: str) -> tuple[list[Part], str | None] | None:
    """The parts and validator of a journal (its ``text``) that fits its file; None to start over."""
    try:
        record = json.loads(text)
        on_disk = os.stat(path).st_size
    except (OSError, ValueError):
        return None
    try:
        if record["version"] != JOURNAL_VERSION or record["size"] != size:
            return None
        parts = [Part(int(start), int(end), int(done)) for start, end, done in record["parts"]]
    except (KeyError, TypeError, ValueError):
        return None
    edges = [0] + [part.end for part in parts]
    if [part.start for part in parts] != edges[:-1] or edges[-1] != size:
        return None  # the parts must tile the file
    if any(not 0 <= part.done <= part.end - part.start for part in parts):  # type: ignore[operator]
        return None
    if len(parts) == 1:
        parts[0].done = min(on_disk, size)  # one part is written in order: the file's length says how far
    elif on_disk < max(part.offset for part in parts):
        return None
    validator = record.get("validator") if record.get("url") == url else None  # another URL: another ETag space
    return parts, validator if isinstance(validator, str) else None


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass

