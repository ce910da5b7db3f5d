"""Many small files from one server, pipelined on one HTTP/1.1 connection.

Why: fetched one request at a time, a 16 KiB file costs a round trip and, on
both ends, a wake-up and a few system calls, for an answer of a few packets.
Pipelined (RFC 9112, 9.3.2), up to ``DEPTH`` requests go out in one write and
the answers come back to back, several per read. Measured on loopback against
nginx (docs/performance.md): a bare loop writing 2000 × 16 KiB into the store
and the view took 0.36 s in two pipelined processes, about curl -Z's time,
and 0.49 s or more without; modelsync's own sync of those files went from
1.02 s to 0.75 s.

This is a fast path for the usual case, and only that. An answer is taken
when it is a 200 of exactly the pinned size, not encoded, whose bytes have
the pinned blake3. Any other answer (a redirect, a 404, a 503, a mismatch) is
read to its end and its file is left to the normal path
(``transfer.fetch_blob``), which has the redirects, retries, resumes and error
messages. A connection that breaks (a drop, a reply that is not HTTP) sends
what was not answered again on a fresh one, once without progress; a stall
(no byte for the stall timeout) leaves the rest to the normal path at once.
A server that closes after some answers (a keep-alive limit) just gets a new
connection; one that closes after every answer, twice in a row, leaves the
rest to the normal path, which has more connections at once.

Each blob is claimed (``Store.try_claim``) before its request goes out, so
processes sharing a cache still download it once; a blob another process
holds goes the normal way, which waits for it.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import blake3

from . import _env, _http1
from .errors import ModelsyncError
from .http import Retryable
from .sources import Context, FetchItem
from .store import Claim

DEPTH = 16  # requests in flight on a connection (MODELSYNC_PIPELINE)
# Larger files go the normal way, streamed to disk: here a body is held in memory whole,
# and beside a larger body the request's own cost is small (200 × 1 MiB from loopback
# took as long pipelined as not, about 0.85 s, both as fast as curl -Z).
MAX_SIZE = 256 << 10
MIN_FILES = 8  # fewer files to one server gain nothing from a stream
# A stream for each so many bytes, up to the connection budget (jobs). One pipelined
# connection keeps a near server busy: more streams in one process only queue for
# the GIL (2000 × 16 KiB from loopback: 0.85 s on one stream, 1.3 s on eight), while
# files of a MiB want several connections' bandwidth from a far one.
BYTES_PER_STREAM = 32 << 20
_AHEAD_BYTES = 32 * 1024  # request bytes unanswered at most: they always fit the socket's buffer
_DRAIN = 1 << 20  # an answer not taken is read to its end up to this size: cheaper than sending the queued requests again


def origin(kind: str, items: list[FetchItem]) -> str | None:
    """The server a task's files can be pipelined from, or None when they go the normal way."""
    if kind != "url" or len(items) != 1:
        return None
    file = items[0].file
    if file.size > MAX_SIZE or file.url is None:
        return None
    scheme, _, rest = file.url.partition("://")
    return f"{scheme.lower()}://{rest.split('/', 1)[0].lower()}"


def depth() -> int:
    """Requests in flight on a connection: MODELSYNC_PIPELINE, else ``DEPTH``."""
    return _env.integer(_env.PIPELINE, example=str(DEPTH)) or DEPTH


def streams(items: list[FetchItem], jobs: int) -> list[list[FetchItem]]:
    """One server's files shared out over streams (empty: too few to be worth one,
    or MODELSYNC_PIPELINE=1: one request at a time, every file the normal way)."""
    if len(items) < MIN_FILES or depth() == 1:
        return []
    count = max(1, min(jobs, -(-sum(item.file.size for item in items) // BYTES_PER_STREAM)))
    return [items[k::count] for k in range(count)]


def fetch(items: list[FetchItem], ctx: Context, done: Callable[[FetchItem], None]) -> list[FetchItem]:
    """Put the blobs of ``items`` (small pinned files of one server) into the store,
    calling ``done(item)`` as each is there. Returns the files left to the normal path."""
    return _Stream(items, ctx, done).run()


class _Broken(Exception):
    def __init__(self, *, stalled: bool) -> None:
        super().__init__()
        self.stalled = stalled


def _broken(error: OSError) -> _Broken:
    """A failure of the connection as ``_Broken``: a stall ends the stream; a drop or
    a reply that is not HTTP sends the unanswered requests again on a fresh one.
    (An ``except`` clause, not a context manager: a with-block costs each answer ~2 µs.)"""
    return _Broken(stalled=isinstance(error, TimeoutError))


class _Stream:
    def __init__(self, items: list[FetchItem], ctx: Context, done: Callable[[FetchItem], None]) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.store = ctx.store
        self.done = done
        self.todo = deque(items)
        self.left: list[FetchItem] = []
        self.headers = self.client.default_headers()
        self.key: tuple | None = None  # the connection pool's key of the server
        self.prefix = ""  # "scheme://host:port" as the first URL writes it
        self.head = b""  # the header block every request of the stream sends
        self.published = 0
        self.answers = 0  # read on the current connection
        self.depth = depth()

    def run(self) -> list[FetchItem]:
        self.key = self._key()
        tries = 0  # connections in a row that published nothing
        short = 0  # connections in a row that the server ended after one answer
        while self.key is not None and self.todo and tries < 2 and short < 2:
            self.ctx.check_cancelled()
            before = self.published
            self.answers = 0
            try:
                with self.ctx.slots:
                    self._connection()
            except _Broken as broken:
                if broken.stalled:
                    break
            tries = 0 if self.published > before else tries + 1
            # A server that answers one request a connection makes a stream one file
            # at a time: the normal path then does better, on all its connections.
            short = short + 1 if self.answers <= 1 and self.todo else 0
        self.left.extend(self.todo)
        self.todo.clear()
        return self.left

    def _key(self) -> tuple | None:
        """The server of the first file that routes, when a pipelined connection to it is fine."""
        for item in self.todo:
            url = item.file.url
            try:
                key, _, headers = self.client.route(url, self.headers) if url else (None, "", {})
                self.head = _http1.header_block(headers)
            except (ModelsyncError, ValueError):  # a URL the normal path will explain (_request leaves it)
                continue
            if key is None or (key[3] is not None and key[0] == "http"):
                return None  # a plain proxy may not keep pipelined answers in order
            scheme, _, rest = url.partition("://")  # type: ignore[union-attr]
            self.prefix = f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0].split('#', 1)[0]}"
            return key
        return None

    def _connection(self) -> None:
        """Requests and answers on one connection, until every file is sent and
        answered or the connection ends."""
        try:
            connection = self.client.open(self.key)
        except (Retryable, ModelsyncError):  # cannot connect: the normal path retries, and says why
            raise _Broken(stalled=True) from None
        pending: deque[tuple[FetchItem, Claim]] = deque()
        reusable = False
        try:
            while True:
                self._send_more(connection, pending)
                if not pending:
                    reusable = True
                    return
                item, claim = pending[0]
                try:
                    body, goes_on = self._answer(connection, item)
                except OSError as error:
                    raise _broken(error) from None
                pending.popleft()
                self.answers += 1
                try:
                    if body is None:
                        self.left.append(item)
                    else:
                        self.store.put(body, item.file.blake3)
                        self.published += 1
                        self.ctx.progress(item.file.size)
                        self.done(item)
                finally:
                    claim.release()
                if not goes_on:
                    return
                self.ctx.check_cancelled()
        finally:
            for item, claim in reversed(pending):
                claim.release()
                self.todo.appendleft(item)
            self.client.finish(self.key, connection, reusable=reusable)

    def _send_more(self, connection: _http1.Connection, pending: deque[tuple[FetchItem, Claim]]) -> None:
        """Top up the requests in flight: one write for half a pipeline's worth."""
        if len(pending) > self.depth // 2:
            return
        batch: list[bytes] = []
        size = 0
        while self.todo and len(pending) < self.depth and size < _AHEAD_BYTES:
            item = self.todo.popleft()
            file = item.file
            claim = self.store.try_claim(file.blake3, file.size)
            if claim is None:  # another thread or process is on it: the normal path waits for it
                self.left.append(item)
                continue
            if claim.present:
                self.done(item)
                continue
            request = self._request(item)
            if request is None:
                claim.release()
                self.left.append(item)
                continue
            batch.append(request)
            pending.append((item, claim))
            size += len(request)
        if batch:
            try:
                connection.send(b"".join(batch))
            except OSError as error:
                raise _broken(error) from None

    def _request(self, item: FetchItem) -> bytes | None:
        """The request for ``item``, or None when it cannot share this stream's connection."""
        url = item.file.url
        assert url is not None
        try:
            rest = url[len(self.prefix) :]
            if url.startswith(self.prefix) and rest[:1] in ("/", "?", "#", ""):
                # The stream's server as the first URL wrote it: same Host, credentials
                # and proxy, so only the target differs (route() costs 10 µs a file).
                target = rest.split("#", 1)[0]
                return _http1.request_line("GET", target if target.startswith("/") else f"/{target}") + self.head
            key, target, headers = self.client.route(url, self.headers)
            if key != self.key:
                return None
            return _http1.request_bytes("GET", target, headers)
        except (ModelsyncError, ValueError):  # a URL the normal path will explain
            return None

    @staticmethod
    def _answer(connection: _http1.Connection, item: FetchItem) -> tuple[bytes | None, bool]:
        """The next answer's bytes when they are exactly the pinned file (else None,
        with the answer read to its end when it is small), and whether the
        connection goes on after it."""
        file = item.file
        body = connection.plain_body(file.size)
        goes_on = True
        if body is None:  # not the plainest answer: read the general way
            response = connection.response()
            encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
            if response.status != 200 or encoding != "identity" or response.length != file.size:
                if response.length is not None and response.length <= _DRAIN:
                    response.read(response.length)
            else:
                body = response.read(file.size)
                if not response.complete:
                    raise _http1.ProtocolError("the answer ended before its Content-Length")
            goes_on = response.complete and not response.will_close
        if body is not None and blake3.blake3(body).hexdigest() != file.blake3:
            return None, goes_on
        return body, goes_on
