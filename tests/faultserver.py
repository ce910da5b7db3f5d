"""A local HTTP server that misbehaves on purpose: the transfer engine's test bench.

Usage (the ``fault_server`` fixture is registered by tests/conftest.py)::

    from faultserver import corrupt, drop_after, status

    def test_something(fault_server):
        url = fault_server.add("files/model.bin", data)        # serve bytes; ETag derived from them
        fault_server.fault("files/model.bin", drop_after(1000), status(503))  # the next two GETs
        fault_server.always("files/model.bin", corrupt())       # every GET once the queue is empty
        fault_server.throttle("files/model.bin", 4 << 20)       # at most 4 MiB/s, all GETs together
        ...
        fault_server.gets("files/model.bin")                   # Request records, in arrival order
        fault_server.served("files/model.bin")                 # body bytes written, all GETs

What it serves: HTTP/1.1 with keep-alive, ``Accept-Ranges: bytes``, a strong ``ETag``
(``set_etag`` changes it), one range per request (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``:
206 with ``Content-Range``; 416 past the end; several ranges: 200 and the whole file), and
``If-Range``: a value other than the current ETag gets 200 and the whole file.

Faults: each GET of a path takes the next fault queued for it (``fault``); with an empty queue
it takes the path's persistent one (``always``), if any. HEAD requests never take a fault.
A ``throttle`` applies to every GET of its path, on top of any fault.

Every request is recorded (thread-safe, appended when it arrives): ``mark()`` returns the
number recorded so far, and ``since=mark`` restricts a query to the requests after it.
"""

from __future__ import annotations

import gzip as _gzip
import hashlib
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest


@dataclass(frozen=True)
class Fault:
    kind: str
    n: int = 0  # bytes of body sent before a drop or a stall; extra bytes for `longer`
    seconds: float = 0.0
    code: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    encoding: str = ""


def drop_after(n: int) -> Fault:
    """Send the headers and ``n`` body bytes, then close the connection."""
    return Fault("drop", n=n)


def status(code: int, headers: dict[str, str] | None = None) -> Fault:
    """Answer ``code`` (500, 503, 429…) with ``headers`` (e.g. ``{"Retry-After": "1"}``) and no file."""
    return Fault("status", code=code, headers=tuple((headers or {}).items()))


def stall_after(n: int, seconds: float) -> Fault:
    """Send ``n`` body bytes, then nothing for ``seconds``, then close the connection."""
    return Fault("stall", n=n, seconds=seconds)


def ignore_range() -> Fault:
    """Answer a Range request with 200 and the whole file."""
    return Fault("ignore_range")


def gzip() -> Fault:
    """200 with the whole file gzip-compressed and ``Content-Encoding: gzip``, whatever was asked."""
    return Fault("encoding", encoding="gzip")


def encoding(name: str) -> Fault:
    """200 with garbage bytes labelled ``Content-Encoding: name`` (one the client cannot decode)."""
    return Fault("encoding", encoding=name)


def longer(extra: int) -> Fault:
    """The asked bytes followed by ``extra`` more (Content-Length counts them)."""
    return Fault("longer", n=extra)


def corrupt() -> Fault:
    """Flip one byte in the middle of the body."""
    return Fault("corrupt")


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # as the client sent them
    started: float  # time.monotonic() when the request arrived
    fault: str | None = None  # the kind of the fault it took
    status: int = 0  # the status sent
    offset: int = 0  # file offset of the first body byte sent (a 206's range start)
    sent: int = 0  # body bytes actually written to the socket (as encoded on the wire)
    ended: float | None = None  # when the answer was over, or the connection broke
    client: tuple = ()  # the client's (host, port): one per connection, so tests can count connections

    def header(self, name: str) -> str | None:
        """A request header, whatever its case."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    @property
    def range(self) -> str | None:
        return self.header("Range")


class _Throttle:
    """A rate shared by all connections of one path: each chunk books the next free slot."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.chunk = max(1024, min(64 << 10, rate // 50))
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, nbytes: int, closing: threading.Event) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + nbytes / self.rate
        if closing.wait(start - now):
            raise ConnectionAbortedError("server closing")


@dataclass
class FaultServer:
    host: str = "127.0.0.1"
    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    closing: threading.Event = field(default_factory=threading.Event)
    _queues: dict[str, deque[Fault]] = field(default_factory=dict)
    _always: dict[str, Fault] = field(default_factory=dict)
    _throttles: dict[str, _Throttle] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- set up ---------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, data: bytes, etag: str | None = None) -> str:
        key = _key(path)
        self.files[key] = data
        self.etags[key] = etag or '"' + hashlib.sha256(data).hexdigest()[:24] + '"'
        return self.url(path)

    def set_etag(self, path: str, etag: str) -> None:
        self.etags[_key(path)] = etag

    def fault(self, path: str, *faults: Fault) -> None:
        """Queue one-shot faults, taken by the next GETs of ``path`` in order."""
        with self._lock:
            self._queues.setdefault(_key(path), deque()).extend(faults)

    def always(self, path: str, fault: Fault | None) -> None:
        """A fault for every GET once the queue is empty (None: none)."""
        with self._lock:
            self._always.pop(_key(path), None)
            if fault is not None:
                self._always[_key(path)] = fault

    def throttle(self, path: str, bytes_per_second: int | None) -> None:
        """Limit all GETs of ``path`` together to a rate (None: full speed, at once)."""
        with self._lock:
            self._throttles.pop(_key(path), None)
            if bytes_per_second:
                self._throttles[_key(path)] = _Throttle(bytes_per_second)

    # -- what happened --------------------------------------------------------

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def gets(self, path: str, since: int = 0) -> list[Request]:
        with self._lock:
            return [r for r in self.requests[since:] if r.method == "GET" and r.path == _key(path)]

    def served(self, path: str, since: int = 0) -> int:
        """Body bytes written for ``path`` by all GETs after ``since``."""
        return sum(r.sent for r in self.gets(path, since))

    def busy(self, path: str, since: int = 0) -> bool:
        """Is an answer for ``path`` still being written?"""
        return any(r.ended is None for r in self.gets(path, since))

    # -- used by the handler --------------------------------------------------

    def _take(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._queues.get(path)
            return queue.popleft() if queue else self._always.get(path)

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def _key(path: str) -> str:
    return "/" + path.lstrip("/")


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """(start, end) of one ``bytes=`` range; "unsatisfiable"; None to ignore the header."""
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    try:
        if not dash or not (first or last):
            return None
        if not first:  # bytes=-n: the last n bytes
            return (max(0, size - int(last)), size) if int(last) else "unsatisfiable"
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    return None if end <= start else (start, end)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # the client went away between requests: nothing to report
            pass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        state: FaultServer = self.server.state  # type: ignore[attr-defined]
        record = Request(self.command, urlsplit(self.path).path, dict(self.headers), time.monotonic(), client=tuple(self.client_address))
        state._record(record)
        try:
            self._respond(state, record, head)
        except OSError:  # the client went away (or the server is closing)
            self.close_connection = True
        finally:
            record.ended = time.monotonic()

    def _respond(self, state: FaultServer, record: Request, head: bool) -> None:
        data = state.files.get(record.path)
        fault = None if head or data is None else state._take(record.path)
        kind = record.fault = fault.kind if fault else None
        if data is None or kind == "status":
            code = fault.code if fault else 404
            return self._send(state, record, code, dict(fault.headers) if fault else {}, b"", head)
        etag = state.etags[record.path]
        headers = {"Accept-Ranges": "bytes", "ETag": etag, "Content-Type": "application/octet-stream"}
        code, body = 200, data
        asked, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if asked and kind not in ("ignore_range", "encoding") and if_range in (None, etag):
            span = _parse_range(asked, len(data))
            if span == "unsatisfiable":
                return self._send(state, record, 416, {**headers, "Content-Range": f"bytes */{len(data)}"}, b"", head)
            if span is not None:
                start, end = span
                code, body, record.offset = 206, data[start:end], start
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        if kind == "encoding":
            headers["Content-Encoding"] = fault.encoding
            body = _gzip.compress(data) if fault.encoding == "gzip" else hashlib.sha256(data).digest() * 64
        elif kind == "longer":
            body = body + (b"extra!" * (fault.n // 6 + 1))[: fault.n]
        elif kind == "corrupt" and body:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        self._send(state, record, code, headers, body, head, cut=fault if kind in ("drop", "stall") else None)

    def _send(self, state: FaultServer, record: Request, code: int, headers: dict[str, str], body: bytes, head: bool, cut: Fault | None = None) -> None:
        """Headers, then the body (throttled; only ``cut.n`` bytes of it, then silence and a close, for a cut)."""
        record.status = code
        self.send_response(code)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if head:
            return
        view, pos = memoryview(body)[: cut.n if cut else len(body)], 0
        while pos < len(view):
            throttle = state._throttles.get(record.path)
            n = min(len(view) - pos, throttle.chunk if throttle else 256 << 10)
            if throttle:
                throttle.wait(n, state.closing)
            self.wfile.write(view[pos : pos + n])
            pos += n
            record.sent += n
        if cut:
            state.closing.wait(cut.seconds)  # 0 for a drop
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many parallel connections from several processes at once


@pytest.fixture
def fault_server():
    state = FaultServer()
    httpd = _Server((state.host, 0), _Handler)
    httpd.state = state  # type: ignore[attr-defined]
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=lambda: httpd.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.closing.set()  # wakes stalls and throttles
        httpd.shutdown()
        httpd.server_close()
