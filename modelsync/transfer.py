"""One blob from one URL into the store: resumable, split into parallel Range
parts when large, hashed as it arrives, verified before anyone can see it.

- A file under ``MODELSYNC_SPLIT_SIZE`` (64 MiB) is one stream, hashed in
  memory as it is written.
- A larger one is split into parts (``partial.layout``) that up to ``jobs``
  connections fetch at once, each written at its offset into one preallocated
  file. A hasher follows the completed prefix, reading back what the page
  cache still holds, so the digest is ready moments after the last byte: no
  second pass over the file. Memory stays at a buffer per connection.
- Failures are retried with exponential backoff and jitter, bounded in tries
  (in a row without progress) and in time; a retry resumes where its part
  stopped. A ``Retry-After`` is honoured.
- A server that ignores Range (200 to a ranged request), a changed file
  (``If-Range`` refused) or an encoded body restarts the file cleanly, as one
  stream: bytes of two answers are never mixed.
- Bytes that do not verify are thrown away and fetched once more from scratch;
  a second mismatch is an error that shows both digests.
"""

from __future__ import annotations

import hashlib
import threading
import time

import blake3

from . import _env, _http1, http as mhttp
from .errors import IntegrityError, Mismatch, NetworkError, OperationalError, SourceError
from .partial import Part, Partial
from .store import Digests, Expected

DEFAULT_SPLIT_SIZE = 64 << 20
DEFAULT_LOCK_TIMEOUT = 60.0
HASH_BLOCK = 8 << 20
JOURNAL_EVERY = 0.1  # seconds: what a kill -9 can cost is what arrives in this time
AUTH_HINT = "the server wants credentials: put them in ~/.netrc (they never enter models.lock)"


class _Stop(Exception):
    """Another part failed: this one stops too."""


class _Restart(Exception):
    """The server cannot serve parts of this file: fetch it again as one stream."""


def fetch_blob(
    ctx,  # sources.Context (not imported: sources imports this module)
    url: str,
    expected: Expected,
    *,
    headers: dict[str, str] | None = None,
    auth_hint: str = AUTH_HINT,
) -> Digests:
    """Put the bytes of ``url`` into the store, verified against ``expected``.

    With a pinned digest the blob is claimed first (one download per cache,
    whatever the number of processes), resumed from a partial a previous run
    left, and skipped when the store already has it. Without one (lock time)
    the bytes are downloaded, hashed and published under their digest."""
    store = ctx.store
    split_size, stall_limit = settings_from_env()
    pinned = expected.blake3 is not None and expected.size is not None
    for attempt in (1, 2):
        claim = None
        if pinned:
            claim = store.claim(expected.blake3, expected.size, stall_limit=stall_limit, check_cancelled=ctx.check_cancelled)  # type: ignore[arg-type]
            if claim.present:
                return Digests(expected.size, expected.blake3)  # type: ignore[arg-type]
        try:
            layout = expected
            if expected.size is None and ctx.jobs > 1:
                # Lock time: the size is not known yet. A large file is worth a HEAD
                # first, so that it too comes in parallel parts.
                size = _size_by_head(ctx, url, headers or {})
                if size is not None and size >= split_size:
                    layout = Expected(size=size, blake3=expected.blake3, sha256=expected.sha256)
            partial = Partial.open(store, url, layout, owned=bool(claim and claim.owned), split_size=split_size, jobs=ctx.jobs)
            download = _Download(ctx, url, partial, headers or {}, auth_hint, sha256=not pinned and expected.sha256 is not None)
            try:
                digests = download.run()
                _check(expected, digests)
            except IntegrityError:
                ctx.progress(-download.reported)
                partial.discard()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                partial.suspend()
                raise
            partial.publish(digests.blake3)
            return digests
        finally:
            if claim is not None:
                claim.release()
    raise AssertionError("unreachable")


def settings_from_env() -> tuple[int, float]:
    """(MODELSYNC_SPLIT_SIZE, MODELSYNC_LOCK_TIMEOUT)."""
    split_size = _env.integer(_env.SPLIT_SIZE, example=str(DEFAULT_SPLIT_SIZE)) or DEFAULT_SPLIT_SIZE
    return split_size, _env.seconds(_env.LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT)


def _size_by_head(ctx, url: str, headers: dict[str, str]) -> int | None:  # type: ignore[no-untyped-def]
    """The size a HEAD announces, when the server also offers ranges of the
    file as stored; None on any doubt (the download then streams, as before)."""
    try:
        with ctx.slots, ctx.client.get(url, headers, method="HEAD") as response:
            ranges = (response.header("Accept-Ranges") or "").strip().lower() == "bytes"
            identity = response.encoding in ("identity", "")
            if response.status == 200 and ranges and identity:
                return response.length
    except (mhttp.Retryable, OSError, SourceError, NetworkError):
        pass
    return None


def _check(expected: Expected, found: Digests) -> None:
    if expected.size is not None and found.size != expected.size:
        raise IntegrityError(Mismatch("size", f"{expected.size} bytes", f"{found.size} bytes"))
    if expected.blake3 is not None and found.blake3 != expected.blake3:
        raise IntegrityError(Mismatch("blake3", expected.blake3, found.blake3))
    if expected.sha256 is not None and found.sha256 is not None and found.sha256 != expected.sha256:
        raise IntegrityError(Mismatch("sha256", expected.sha256, found.sha256))


class _Hasher:
    """blake3 of the file's prefix, fed in order: in memory, or read back from the file.

    sha256 too when asked: at lock time, to check an upstream's sha256 (the
    Hub's LFS id, one written in models.toml). At sync the blake3 pin, checked
    against that same sha256 when it was pinned, vouches for the bytes alone."""

    def __init__(self, sha256: bool = False) -> None:
        self._want_sha256 = sha256
        self.reset()

    def reset(self) -> None:
        self.position = 0
        self._hash = blake3.blake3()
        self._sha256 = hashlib.sha256() if self._want_sha256 else None

    def update(self, data: memoryview | bytes) -> None:
        self._hash.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        self.position += len(data)

    def digests(self) -> Digests:
        return Digests(self.position, self._hash.hexdigest(), self._sha256.hexdigest() if self._sha256 else None)

    def catch_up(self, partial: Partial, upto: int) -> None:
        while self.position < upto:
            block = partial.read_at(self.position, min(HASH_BLOCK, upto - self.position))
            if not block:
                raise OperationalError(f"the partial download {partial.path} is shorter than its journal says")
            self.update(block)


class _Download:
    def __init__(self, ctx, url: str, partial: Partial, headers: dict[str, str], auth_hint: str, *, sha256: bool) -> None:  # type: ignore[no-untyped-def]
        self.ctx = ctx
        self.sha256 = sha256
        self.url = url
        self.partial = partial
        self.headers = headers
        self.auth_hint = auth_hint
        self.client: mhttp.Client = ctx.client
        self.policy = self.client.policy
        self.reported = 0  # bytes counted in the progress so far (taken back if they do not verify)
        self.stop = threading.Event()
        self._changed = threading.Condition()
        self._journal_at: float | None = None  # when a single stream's journal is due
        # Per part: failures in a row without a byte of progress, and since when.
        # One part's bad luck must not use up the tries of the seven others.
        self._failures: dict[int, tuple[int, float]] = {}

    # -- the two shapes of a download --------------------------------------------

    def run(self) -> Digests:
        self._report(self.partial.written)  # resumed bytes count as done
        if self.partial.split:
            try:
                return self._run_parts()
            except _Restart:
                self._report(-self.partial.written)
                self.partial.restart()
                self.stop.clear()
        return self._run_stream()

    def _run_stream(self) -> Digests:
        partial = self.partial
        part = partial.parts[0]
        hasher = _Hasher(sha256=self.sha256)
        hasher.catch_up(partial, part.offset)  # a resumed prefix, from disk
        self._pull(part, hasher)
        return hasher.digests()

    def _run_parts(self) -> Digests:
        partial = self.partial
        assert partial.size is not None
        partial.preallocate()
        queue = [part for part in partial.parts if not part.complete]
        queue_lock = threading.Lock()
        errors: list[BaseException] = []

        def next_part() -> Part | None:
            with queue_lock:
                return queue.pop(0) if queue else None

        def work() -> None:
            try:
                while not self.stop.is_set() and (part := next_part()) is not None:
                    self._pull(part, None)
            except BaseException as error:  # noqa: BLE001 - handed to the coordinating thread
                errors.append(error)
                self.stop.set()
            finally:
                with self._changed:
                    self._changed.notify_all()

        workers = [threading.Thread(target=work, name="modelsync-part", daemon=True) for _ in range(min(self.ctx.jobs, len(queue)))]
        for worker in workers:
            worker.start()
        hasher = _Hasher(sha256=self.sha256)
        saved_at = time.monotonic()
        try:
            while True:
                with self._changed:
                    prefix = self._prefix()
                    if prefix == hasher.position and not self.stop.is_set() and prefix < partial.size:
                        self._changed.wait(JOURNAL_EVERY)
                        prefix = self._prefix()
                hasher.catch_up(partial, prefix)
                if time.monotonic() - saved_at >= JOURNAL_EVERY:
                    partial.save()
                    saved_at = time.monotonic()
                if errors or self.ctx.cancel.is_set() or hasher.position >= partial.size:
                    break
        finally:
            self.stop.set()
            for worker in workers:
                worker.join()
            partial.save()
        if errors:
            restart = next((e for e in errors if isinstance(e, _Restart)), None)
            raise restart or next((e for e in errors if not isinstance(e, _Stop)), errors[0])
        self.ctx.check_cancelled()
        return hasher.digests()

    def _prefix(self) -> int:
        """How far the file is complete from its start."""
        for part in self.partial.parts:
            if not part.complete:
                return part.offset
        return self.partial.size or 0

    # -- one part (or the whole stream), with retries -------------------------------

    def _pull(self, part: Part, hasher: _Hasher | None) -> None:
        """Fetch the rest of ``part``; ``hasher`` follows in memory when it is the only part."""
        while not part.complete:
            self._check_stop()
            headers = dict(self.headers)
            whole = part.start == 0 and part.end == self.partial.size
            if part.done or not whole:
                headers["Range"] = f"bytes={part.offset}-" + ("" if whole or part.end is None else str(part.end - 1))
                if self.partial.validator:
                    headers["If-Range"] = self.partial.validator
            try:
                with self.ctx.slots:
                    self._check_stop()
                    with self.client.get(self.url, headers) as response:
                        self._receive(response, part, hasher, ranged="Range" in headers)
                if part.end is None:
                    part.end = part.offset  # the size was not known: the body ended, the file is whole
            except mhttp.Retryable as error:
                self._failed(part, error)
            except OSError as error:  # a drop, a stall or a reply that is not HTTP, in the body
                self._check_stop()
                self._failed(part, mhttp.Retryable(mhttp.describe(error)))

    def _receive(self, response: mhttp.Response, part: Part, hasher: _Hasher | None, *, ranged: bool) -> None:
        status = response.status
        if status in mhttp.RETRY_STATUS:
            raise mhttp.Retryable(f"HTTP {status} {response.reason}", mhttp.retry_after(response.header("Retry-After")))
        if status in (401, 403):
            raise SourceError(f"HTTP {status} {response.reason} for {mhttp.redact(self.url)}{_server_says(response)}", hint=self.auth_hint)
        if status == 416 and ranged:
            if self.partial.split:
                raise IntegrityError(Mismatch("size", f"{self.partial.size} bytes", "less (the server refused a range inside it)"))
            self._start_over(part, hasher)
            raise mhttp.Retryable("HTTP 416: the resume offset is past the server's file")
        if status >= 400 or status not in (200, 206):
            raise SourceError(
                f"HTTP {status} {response.reason} for {mhttp.redact(self.url)}{_server_says(response)}",
                hint="check the URL; if it moved, update models.toml and run `modelsync lock`",
            )
        encoded = response.encoding not in ("identity", "")
        if status == 206 and encoded:
            status = -1  # ranges of an encoded body are ranges of the encoding: useless to us
        if ranged and status != 206:
            # Range ignored, or If-Range refused because the file changed: this answer is
            # the whole file. One stream can take it from the start; parts cannot.
            if self.partial.split:
                raise _Restart
            self._start_over(part, hasher)
            if status == -1:
                raise mhttp.Retryable("the server encoded a ranged answer; asking for the whole file")
        elif status == 206:
            self._check_range(response, part)
        size = self.partial.size
        if status == 200 and not encoded and size is not None and response.length is not None and response.length != size:
            raise IntegrityError(Mismatch("size", f"{size} bytes", f"{response.length} bytes (Content-Length)"))
        if self.partial.validator is None:
            self.partial.validator = _validator(response)
        if not self.partial.split:
            # One stream's journal is written once it has run JOURNAL_EVERY: a file
            # that arrives sooner never pays for one (a kill -9 then costs no more
            # than that time), and a longer one is resumable from then on.
            self._journal_at = time.monotonic() + JOURNAL_EVERY
        self._take(response, part, hasher)

    def _take(self, response: mhttp.Response, part: Part, hasher: _Hasher | None) -> None:
        size = self.partial.size
        # Written and hashed before the next read: one buffer serves the whole answer.
        for chunk in response.views(memoryview(bytearray(_http1.RECV))):
            self._check_stop()
            count = len(chunk)
            if part.end is not None and part.offset + count > part.end:
                if part.end == size:
                    raise IntegrityError(Mismatch("size", f"{size} bytes", f"more than {size} bytes"))
                chunk, count = chunk[: part.end - part.offset], part.end - part.offset  # a part's neighbour: not ours
            self.partial.write_at(part.offset, chunk)
            if hasher is not None:
                hasher.update(chunk)
            with self._changed:
                part.done += count
                self._changed.notify_all()
            self._failures.pop(part.start, None)
            self._report(count)
            if part.complete:
                break
            if self._journal_at is not None and time.monotonic() >= self._journal_at:
                self._journal_at = None
                self.partial.save()
        if part.end is not None and not part.complete:
            raise mhttp.Retryable(f"connection closed at byte {part.offset} of {part.end}")

    def _check_range(self, response: mhttp.Response, part: Part) -> None:
        """A 206 must start where we asked, for a file of the size we expect."""
        unit, _, spec = (response.header("Content-Range") or "").partition(" ")
        span, _, total = spec.partition("/")
        start = span.split("-", 1)[0]
        if unit != "bytes" or not start.isdigit() or int(start) != part.offset:
            raise mhttp.Retryable(f"the server answered another range ({response.header('Content-Range')!r}) than asked")
        size = self.partial.size
        if size is not None and total.isdigit() and int(total) != size:
            raise IntegrityError(Mismatch("size", f"{size} bytes", f"{total} bytes (Content-Range)"))

    def _start_over(self, part: Part, hasher: _Hasher | None) -> None:
        """Throw away what a single stream wrote so far."""
        self._report(-part.done)
        self.partial.restart()
        part.done = 0
        self.partial.parts = [part]
        if hasher is not None:
            hasher.reset()

    # -- failures, progress, stopping -------------------------------------------------

    def _failed(self, part: Part, error: mhttp.Retryable) -> None:
        """Count a failure of ``part``; wait before its next try, or give up."""
        now = time.monotonic()
        with self._changed:
            failures, since = self._failures.get(part.start, (0, now))
            failures += 1
            self._failures[part.start] = (failures, since)
            failing_for = now - since
        policy = self.policy
        delay = policy.delay(failures, error.retry_after)
        if failures >= policy.attempts or failing_for + delay > policy.max_time:
            raise NetworkError(
                f"download of {mhttp.redact(self.url)} failed after {failures} attempt(s): {mhttp.redact(str(error))}",
                hint="check the network (and proxy settings), then sync again: what was downloaded is kept and resumes",
            )
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            self._check_stop()
            time.sleep(min(left, 0.05))

    def _check_stop(self) -> None:
        self.ctx.check_cancelled()
        if self.stop.is_set():
            raise _Stop

    def _report(self, count: int) -> None:
        if count:
            with self._changed:
                self.reported += count
            self.ctx.progress(count)


def _validator(response: mhttp.Response) -> str | None:
    """What If-Range may carry: a strong ETag, else Last-Modified."""
    etag = (response.header("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    return (response.header("Last-Modified") or "").strip() or None


def _server_says(response: mhttp.Response) -> str:
    """The server's own explanation, where it gives one (the Hugging Face Hub does)."""
    message = (response.header("X-Error-Message") or "").strip()
    return f": {message[:300]}" if message else ""

