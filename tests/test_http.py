"""The HTTP/1.1 wire layer (modelsync._http1) and the download client on it (modelsync.http).

Every server here is a raw TCP server on 127.0.0.1 started by the test: it reads
request heads and answers each with the next scripted byte string, so a test
controls every byte of the reply (framing, early closes, garbage) and sees
every byte the client sent, connection by connection. Nothing leaves loopback.
"""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync import _http1
from modelsync.errors import SourceError
from modelsync.http import Client, Retryable, RetryPolicy

# A failing test must fail fast: a client that waits for bytes that never come
# gives up after a second instead of the default 30.
POLICY = RetryPolicy(attempts=1, backoff=0.0, connect_timeout=2.0, read_timeout=1.0)


# --------------------------------------------------------------------------
# A scripted raw server


@dataclass
class Seen:
    """One request head as the server received it."""

    raw: bytes
    line: str
    method: str
    target: str
    headers: dict[str, str]  # lower-cased name -> value; repeated names joined with ", "

    @classmethod
    def parse(cls, raw: bytes) -> Seen:
        text = raw.decode("latin-1")
        line, *rest = text.split("\r\n")
        method, target, _version = line.split(" ", 2)
        headers: dict[str, str] = {}
        for item in rest:
            name, _, value = item.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        return cls(raw, line, method, target, headers)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    data: bytes = b""
    # None: keep the connection; "close": close it after sending; "half": shut writes, keep
    # reading; "notify": (TLS) send close_notify, then close
    close: str | None = None
    piece: int = 0  # send in pieces of this many bytes with a short pause between; 0: all at once
    relay_to: int | None = None  # after sending, relay bytes both ways to 127.0.0.1:relay_to (a CONNECT tunnel)


Answer = Reply | bytes | None  # None: close the connection without answering


@dataclass
class Link:
    """One accepted TCP connection."""

    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    requests: list[Seen] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    extra: list[socket.socket] = field(default_factory=list)


class WireServer:
    """Reads request heads (requests here have no body) and answers each with the next
    scripted reply; once the script is used up, ``respond(seen)`` answers, if set."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._script: deque[Answer] = deque()
        self.respond: Callable[[Seen], Answer] | None = None
        self.links: list[Link] = []
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    def settle(self, connections: int = 0, timeout: float = 2.0) -> None:
        """Wait until the server has accepted at least ``connections`` connections and
        every connection it accepted is over (closed by either end)."""
        deadline = time.monotonic() + timeout
        while len(self.links) < connections and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.links) >= connections, "the server did not see the connection"
        for link in list(self.links):
            assert link.done.wait(max(0.0, deadline - time.monotonic())), "a server connection is still open"

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting in its thread (Linux)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            socks = [s for link in self.links for s in (link.sock, *link.extra)]
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(timeout=1.0)

    # -- the server's side --------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(5.0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = Link(sock)
            with self._lock:
                if self._stop.is_set():
                    sock.close()
                    return
                self.links.append(link)
                thread = threading.Thread(target=self._serve, args=(link,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _next(self, seen: Seen) -> Answer:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self.respond(seen) if self.respond is not None else None

    def _serve(self, link: Link) -> None:
        try:
            if self._tls is not None:
                link.sock = self._tls.wrap_socket(link.sock, server_side=True)
            sock = link.sock
            buffer = b""
            writable = True
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    link.received += data
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                seen = Seen.parse(head)
                with self._lock:
                    link.requests.append(seen)
                    self.requests.append(seen)
                if not writable:
                    return  # a request on a connection the server half-closed: no answer possible
                answer = self._next(seen)
                if answer is None:
                    return
                reply = answer if isinstance(answer, Reply) else Reply(answer)
                if reply.piece:
                    for start in range(0, len(reply.data), reply.piece):
                        sock.sendall(reply.data[start : start + reply.piece])
                        time.sleep(0.0005)
                else:
                    sock.sendall(reply.data)
                if reply.relay_to is not None:
                    self._relay(link, reply.relay_to)
                    return
                if reply.close == "close":
                    return
                if reply.close == "notify":  # TLS: a close_notify alert, then the TCP close
                    sock.settimeout(0.2)  # unwrap() sends the alert, then waits for the peer's
                    link.sock = sock.unwrap()
                    return
                if reply.close == "half":
                    sock.shutdown(socket.SHUT_WR)
                    writable = False
        except OSError:  # ssl.SSLError included: a client that did not trust the certificate
            pass
        finally:
            try:
                link.sock.close()
            except OSError:
                pass
            link.done.set()

    def _relay(self, link: Link, port: int) -> None:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=5.0)
        with self._lock:
            link.extra.append(upstream)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        back = threading.Thread(target=pump, args=(upstream, link.sock), daemon=True)
        back.start()
        pump(link.sock, upstream)
        back.join(timeout=2.0)
        upstream.close()


@pytest.fixture
def servers():
    """A factory of WireServers, all closed at teardown."""
    made: list[WireServer] = []

    def make(tls: ssl.SSLContext | None = None) -> WireServer:
        server = WireServer(tls)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def server(servers) -> WireServer:
    return servers()


@pytest.fixture(autouse=True)
def clean_network_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No proxy or netrc from the machine running the tests (CA bundles: where a test says)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name in ("REQUEST_METHOD",):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # a file that does not exist


@pytest.fixture
def clients():
    """A factory of Clients (made after the test set its environment), closed at teardown."""
    made: list[Client] = []

    def make() -> Client:
        client = Client(pool_size=4, policy=POLICY)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def connect(server: WireServer):
    """Raw _http1 Connections to the ``server`` fixture, closed at teardown."""
    made: list[_http1.Connection] = []

    def make() -> _http1.Connection:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=2.0)
        connection = _http1.Connection(sock)
        made.append(connection)
        return connection

    yield make
    for connection in made:
        connection.close()


def ok(body: bytes = b"ok", *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def redirect(location: str, status: int = 302, body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status} Found\r\nLocation: {location}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def read_all(response: _http1.Response, size: int = 1 << 16) -> bytes:
    pieces = []
    while data := response.read1(size):
        pieces.append(data)
    return b"".join(pieces)


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


# --------------------------------------------------------------------------
# 1. Content-Length bodies and keep-alive


def test_content_length_body_arrives_in_read1_pieces_no_larger_than_asked(server, connect):
    body = bytes(range(256)) * 40  # 10240 bytes
    server.script(Reply(ok(body), piece=4096))
    response = connect().request("GET", "/blob", {"Host": "h"})
    assert (response.status, response.reason, response.version) == (200, "OK", "HTTP/1.1")
    pieces = []
    while data := response.read1(1000):
        assert len(data) <= 1000
        pieces.append(data)
    assert b"".join(pieces) == body
    assert len(pieces) >= 11
    assert response.complete and not response.will_close
    assert response.read1(1000) == b""  # and stays at the end


def test_bytes_after_a_content_length_body_belong_to_the_next_response(server, connect):
    # Both answers in one send, as a server answering pipelined requests would:
    # the first body must stop at its Content-Length.
    server.script(ok(b"first") + ok(b"second"), Reply(b""))
    connection = connect()
    first = connection.request("GET", "/1", {"Host": "h"})
    assert first.read1(1 << 16) == b"first"
    assert first.complete and first.read1(1 << 16) == b""
    second = connection.request("GET", "/2", {"Host": "h"})
    assert read_all(second) == b"second"


def test_read_with_a_limit_stops_at_the_limit_and_the_rest_stays_readable(server, connect):
    server.script(ok(b"0123456789"))
    response = connect().request("GET", "/", {"Host": "h"})
    assert response.read(4) == b"0123"
    assert not response.complete
    assert response.read(100) == b"456789"
    assert response.complete


def test_client_reuses_one_connection_for_two_requests_after_a_body_read_to_its_end(server, clients):
    server.script(ok(b"first"), ok(b"second"))
    client = clients()
    with client.get(server.url("/a")) as response:
        assert response.status == 200 and response.length == 5
        assert b"".join(response.chunks()) == b"first"
    with client.get(server.url("/b")) as response:
        assert b"".join(response.chunks()) == b"second"
    assert [seen.line for seen in server.requests] == ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]
    assert len(server.links) == 1
    assert len(server.links[0].requests) == 2


def test_client_does_not_reuse_a_connection_whose_body_was_left_unread(server, clients):
    server.script(ok(b"x" * 5000), ok(b"second"))
    client = clients()
    with client.get(server.url("/a")) as response:
        assert response.status == 200  # body not read
    with client.get(server.url("/b")) as response:
        assert b"".join(response.chunks()) == b"second"
    assert len(server.links) == 2


# --------------------------------------------------------------------------
# 2. Chunked transfer coding

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_BODY = (
    b"4;name=value\r\nWiki\r\n"
    b"5 ; quoted=\"a;b\"\r\npedia\r\n"
    b"E\r\n in\r\n\r\nchunks.\r\n"
    b"0;last\r\n"
    b"Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
    b"X-Checksum: abc\r\n"
    b"\r\n"
)


@pytest.mark.parametrize("piece", [0, 1, 7], ids=["at-once", "byte-by-byte", "7-byte-pieces"])
def test_chunked_body_with_extensions_and_trailers_is_decoded_exactly(server, connect, piece):
    server.script(Reply(CHUNKED_HEAD + CHUNKED_BODY, piece=piece), ok(b"next"))
    connection = connect()
    response = connection.request("GET", "/chunked", {"Host": "h"})
    assert read_all(response, 3) == b"Wikipedia in\r\n\r\nchunks."
    assert response.complete and not response.will_close
    # The trailers were consumed to the final empty line: the next response parses cleanly.
    second = connection.request("GET", "/next", {"Host": "h"})
    assert second.status == 200 and second.read(100) == b"next"
    assert len(server.links) == 1


def test_chunked_body_through_the_client_is_pooled_after_its_trailers(server, clients):
    server.script(CHUNKED_HEAD + CHUNKED_BODY, ok(b"next"))
    client = clients()
    with client.get(server.url("/c")) as response:
        assert response.length is None
        assert b"".join(response.chunks()) == b"Wikipedia in\r\n\r\nchunks."
    with client.get(server.url("/n")) as response:
        assert b"".join(response.chunks()) == b"next"
    assert len(server.links) == 1


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n"],
    ids=["not-hex", "empty-size", "chunk-without-crlf"],
)
def test_malformed_chunked_body_is_a_protocol_error_which_is_an_oserror(server, connect, body):
    server.script(CHUNKED_HEAD + body)
    response = connect().request("GET", "/", {"Host": "h"})
    with pytest.raises(_http1.ProtocolError) as caught:
        read_all(response)
    assert isinstance(caught.value, OSError)


# --------------------------------------------------------------------------
# 3. Bodies delimited by the end of the connection


def test_body_without_length_is_read_until_the_server_closes(server, connect):
    body = b"no length here " * 500
    server.script(Reply(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body, close="half", piece=3000))
    response = connect().request("GET", "/", {"Host": "h"})
    assert response.will_close
    assert not response.complete
    assert read_all(response, 1024) == body
    assert response.complete


def test_client_opens_a_new_connection_after_a_close_delimited_body(server, clients):
    # The server only shuts its sending side: were the client to pool the connection,
    # its next request would reach the server on that first connection.
    server.script(Reply(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", close="half"), ok(b"second"))
    client = clients()
    with client.get(server.url("/a")) as response:
        assert b"".join(response.chunks()) == b"until the end"
    with client.get(server.url("/b")) as response:
        assert b"".join(response.chunks()) == b"second"
    assert [len(link.requests) for link in server.links] == [1, 1]


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_client_does_not_pool_a_connection_the_server_said_it_will_close(server, clients, head):
    # The server keeps the connection open anyway: only the client's reading of the
    # head keeps it from sending the second request there.
    server.script(head + b"hi", ok(b"second"))
    client = clients()
    with client.get(server.url("/a")) as response:
        assert response._raw.will_close
        assert b"".join(response.chunks()) == b"hi"
    with client.get(server.url("/b")) as response:
        assert b"".join(response.chunks()) == b"second"
    assert [len(link.requests) for link in server.links] == [1, 1]


def test_http_1_0_keep_alive_response_is_reusable(server, connect):
    server.script(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi")
    response = connect().request("GET", "/", {"Host": "h"})
    assert response.version == "HTTP/1.0" and not response.will_close


# --------------------------------------------------------------------------
# 4. A connection that closes in the middle of a body


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        CHUNKED_HEAD + b"a\r\n01234",
        CHUNKED_HEAD + b"5\r\nhello\r\n",
        CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n",
    ],
    ids=["content-length", "chunked-mid-chunk", "chunked-between-chunks", "chunked-in-trailers"],
)
def test_early_close_in_a_framed_body_is_a_protocol_error(server, connect, reply):
    server.script(Reply(reply, close="close"))
    response = connect().request("GET", "/", {"Host": "h"})
    with pytest.raises(_http1.ProtocolError):
        read_all(response)
    assert not response.complete


def test_early_close_through_client_chunks_raises_oserror_after_the_bytes_that_came(server, clients):
    server.script(Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", close="close"))
    client = clients()
    got: list[bytes] = []
    with client.get(server.url("/big")) as response, pytest.raises(OSError):
        for block in response.chunks():
            got.append(block)  # noqa: PERF402  (what came before the error is the point)
    assert b"".join(got) == b"0123456789"


# --------------------------------------------------------------------------
# 5. Interim 1xx responses


def test_interim_100_and_103_responses_are_skipped(server, connect):
    server.script(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        + ok(b"final", "X-Final: yes")
    )
    response = connect().request("GET", "/", {"Host": "h"})
    assert response.status == 200
    assert response.headers.get("X-Final") == "yes"
    assert "Link" not in response.headers
    assert read_all(response) == b"final"


def test_interim_responses_are_skipped_by_the_client_too(server, clients):
    server.script(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + ok(b"final"))
    with clients().get(server.url("/")) as response:
        assert response.status == 200
        assert b"".join(response.chunks()) == b"final"


# --------------------------------------------------------------------------
# 6. Responses without a body


def test_head_response_has_no_body_despite_content_length_and_the_connection_is_reused(server, clients):
    server.script(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"e\"\r\n\r\n",  # no body: a HEAD
        ok(b"body"),
    )
    client = clients()
    started = time.monotonic()
    with client.get(server.url("/file"), method="HEAD") as response:
        assert response.status == 200 and response.length == 1000
        assert response._raw.complete
        assert list(response.chunks()) == []
    with client.get(server.url("/file")) as response:
        assert b"".join(response.chunks()) == b"body"
    assert time.monotonic() - started < POLICY.read_timeout  # nothing waited for 1000 bytes
    assert [seen.method for seen in server.requests] == ["HEAD", "GET"]
    assert len(server.links) == 1


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_and_the_next_response_follows(server, connect, status):
    server.script(f"HTTP/1.1 {status} X\r\nContent-Length: 1000\r\n\r\n".encode(), ok(b"after"))
    connection = connect()
    response = connection.request("GET", "/", {"Host": "h"})
    assert response.status == status and response.complete
    assert response.read1(100) == b""
    second = connection.request("GET", "/", {"Host": "h"})
    assert read_all(second) == b"after"


# --------------------------------------------------------------------------
# 7. Header parsing


def test_headers_repeated_are_joined_looked_up_in_any_case_and_folded_lines_joined(server, connect):
    server.script(
        b"HTTP/1.1 200 Fine Thanks\r\n"
        b"Set-Cookie: a=1\r\n"
        b"X-Folded: first\r\n"
        b"   second\r\n"
        b"\tthird\r\n"
        b"set-COOKIE: b=2\r\n"
        b"Content-Type:text/plain  \r\n"
        b"Content-Length: 2\r\n"
        b"\r\nhi"
    )
    response = connect().request("GET", "/", {"Host": "h"})
    headers = response.headers
    assert response.reason == "Fine Thanks"
    assert headers.get("SET-COOKIE") == "a=1, b=2"
    assert headers["set-cookie"] == "a=1, b=2"
    assert headers.get("x-folded") == "first second third"
    assert headers["CONTENT-TYPE"] == "text/plain"
    assert "content-length" in headers and "X-Missing" not in headers
    assert headers.get("X-Missing", "default") == "default"
    with pytest.raises(KeyError):
        headers["X-Missing"]
    assert sorted(name.lower() for name, _ in headers.items()) == ["content-length", "content-type", "set-cookie", "x-folded"]
    assert read_all(response) == b"hi"


def test_client_response_header_lookup_ignores_case(server, clients):
    server.script(ok(b"x", "ETag: \"abc\"", "x-linked-size: 123"))
    with clients().get(server.url("/")) as response:
        assert response.header("etag") == '"abc"'
        assert response.header("X-Linked-Size") == "123"
        assert response.header("X-Nothing") is None
        response.drain()


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon in this line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: no name\r\n\r\n",
    ],
    ids=["conflicting-lengths", "negative-length", "no-colon", "no-name"],
)
def test_malformed_response_heads_are_protocol_errors(server, connect, reply):
    server.script(reply)
    with pytest.raises(_http1.ProtocolError):
        connect().request("GET", "/", {"Host": "h"})


class _Pieces:
    """A socket whose peer sent ``data`` in the given pieces: each recv returns at most one."""

    def __init__(self, data: bytes, cuts: list[int]) -> None:
        bounds = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
        self.pieces = deque(data[a:b] for a, b in zip(bounds, bounds[1:]))

    def recv(self, size: int) -> bytes:
        if not self.pieces:
            return b""
        piece = self.pieces.popleft()
        if len(piece) > size:
            piece, rest = piece[:size], piece[size:]
            self.pieces.appendleft(rest)
        return piece

    def recv_into(self, view: memoryview) -> int:
        data = self.recv(len(view))
        view[: len(data)] = data
        return len(data)

    def sendall(self, data: bytes) -> None:
        pass


_PIPELINED = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3;x=1\r\nond\r\n0\r\nTrailer: t\r\n\r\n"
    b"\r\n"  # a stray empty line between answers
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 16384\r\n\r\n" + bytes(range(256)) * 64
    + b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthe rest, to the end"
)

_PIPELINED_ANSWERS = [
    (200, b"first"),
    (200, b"second"),
    (404, b""),
    (200, bytes(range(256)) * 64),
    (200, b"the rest, to the end"),
]


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(_PIPELINED)), max_size=40))
def test_pipelined_answers_read_the_same_however_the_bytes_arrive(cuts):
    """Heads, bodies (sized, chunked, to the end), interim answers and stray line
    ends, in one stream cut anywhere: the answers and their bytes never change."""
    connection = _http1.Connection(_Pieces(_PIPELINED, cuts))  # type: ignore[arg-type]
    answers = []
    for _ in range(5):
        response = connection.response()
        body = b"".join(iter(lambda: response.read1(7), b""))
        answers.append((response.status, body))

    assert answers == _PIPELINED_ANSWERS


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(_PIPELINED)), max_size=40),
    size=st.integers(min_value=1, max_value=20000),
)
def test_readinto1_reads_what_read1_reads_into_one_reused_buffer(cuts, size):
    """The same stream as above, each body read with readinto1 into one buffer of any size."""
    connection = _http1.Connection(_Pieces(_PIPELINED, cuts))  # type: ignore[arg-type]
    buffer = memoryview(bytearray(size))
    answers = []
    for _ in range(5):
        response = connection.response()
        body = b"".join(bytes(buffer[:count]) for count in iter(lambda: response.readinto1(buffer), 0))
        answers.append((response.status, body))

    assert answers == _PIPELINED_ANSWERS


def test_readinto1_of_a_body_cut_short_raises_after_the_bytes_that_came():
    connection = _http1.Connection(_Pieces(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", [45]))  # type: ignore[arg-type]
    response = connection.response()
    buffer = memoryview(bytearray(64))
    got = b""
    with pytest.raises(_http1.ProtocolError) as caught:
        while count := response.readinto1(buffer):
            got += bytes(buffer[:count])
    assert got == b"0123456789"
    assert "90 bytes of the body still to come" in str(caught.value)
    assert response.will_close


# plain_body: the pipeline's short cut for the plainest answers. Each answer here:
# (its bytes, the size the caller expects, whether plain_body may take it).
_ANSWERS = {
    "plain": (b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello", 5, True),
    "plain-lower-spaced": (b"HTTP/1.1 200 OK\r\ncontent-length:   3 \r\n\r\nabc", 3, True),
    "plain-big": (b"HTTP/1.1 200 OK\r\nContent-Length: 16384\r\n\r\n" + bytes(range(256)) * 64, 16384, True),
    "other-size": (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour", 5, False),
    "not-found": (b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!", 5, False),
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 5, False),
    "gzip": (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello", 5, False),
    "closing": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", 5, False),
    "folded": (b"HTTP/1.1 200 OK\r\nX-Long: a\r\n b\r\nContent-Length: 5\r\n\r\nhello", 5, False),
    "twice": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 5, False),
    "http-1.0": (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello", 5, False),
    "no-reason": (b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello", 5, False),
    "interim-first": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 5, False),
    "stray-line-first": (b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 5, False),
}


def _general(connection: _http1.Connection) -> tuple[int, bytes]:
    response = connection.response()
    return response.status, b"".join(iter(lambda: response.read1(1 << 16), b""))


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(st.sampled_from(sorted(_ANSWERS)), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 17), max_size=30),
)
def test_plain_body_takes_only_plain_answers_and_leaves_the_rest_to_response(names, cuts):
    """Answers of every kind back to back, cut anywhere: plain_body takes exactly the
    plain ones, consumes nothing of the others, and what is read (by it, or by
    response for the rest) is what response alone reads."""
    stream = b"".join(_ANSWERS[name][0] for name in names)
    expected = [_general(_http1.Connection(_Pieces(_ANSWERS[name][0], []))) for name in names]  # type: ignore[arg-type]
    connection = _http1.Connection(_Pieces(stream, cuts))  # type: ignore[arg-type]
    read = []
    for name in names:
        body = connection.plain_body(_ANSWERS[name][1])
        assert (body is not None) == _ANSWERS[name][2], name
        read.append((200, body) if body is not None else _general(connection))
    assert read == expected
    assert connection.plain_body(5) is None  # the stream's end: nothing more, nothing invented


@pytest.mark.parametrize("cut", [10, 50, 75, 77], ids=["in-the-status-line", "in-the-head", "in-the-body", "one-byte-short"])
def test_plain_answer_cut_short_by_the_close_is_left_to_response_which_says_so(cut):
    answer = _ANSWERS["plain"][0][:cut]
    connection = _http1.Connection(_Pieces(answer, [cut // 2]))  # type: ignore[arg-type]
    assert connection.plain_body(5) is None
    with pytest.raises(_http1.ProtocolError) as caught:
        _general(connection)
    assert "closed" in str(caught.value)


def test_repeated_equal_content_lengths_are_accepted(server, connect):
    server.script(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
    assert read_all(connect().request("GET", "/", {"Host": "h"})) == b"hello"


# --------------------------------------------------------------------------
# 8. Replies that are not HTTP, connections closed before an answer


@pytest.mark.parametrize(
    "reply",
    [
        Reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        Reply(b"<html><body>hello</body></html>\r\n\r\n"),
        Reply(b"HTTP/2 200\r\n\r\n"),
        Reply(b"HTTP/1.1 2OO OK\r\n\r\n"),
        Reply(b"garbage without an end", close="close"),
    ],
    ids=["ssh-banner", "html", "http2", "bad-status-code", "unterminated-then-close"],
)
def test_reply_that_is_not_http_is_a_protocol_error(server, connect, reply):
    server.script(reply)
    with pytest.raises(_http1.ProtocolError) as caught:
        connect().request("GET", "/", {"Host": "h"})
    assert isinstance(caught.value, ConnectionError)
    assert not isinstance(caught.value, _http1.ClosedBeforeAnswer)  # not worth a silent retry


def test_connection_closed_before_any_status_line_is_closed_before_answer(server, connect):
    server.script(None)  # read the request, close without a word
    with pytest.raises(_http1.ClosedBeforeAnswer) as caught:
        connect().request("GET", "/", {"Host": "h"})
    assert isinstance(caught.value, ConnectionResetError)


def test_client_turns_a_non_http_reply_into_retryable(server, clients):
    server.script(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    with pytest.raises(Retryable):
        clients().get(server.url("/"))


def test_stale_pooled_connection_is_retried_once_on_a_new_connection(server, clients):
    # The first answer says nothing about closing, then the server drops the connection.
    server.script(Reply(ok(b"first"), close="close"), ok(b"second"))
    client = clients()
    with client.get(server.url("/a")) as response:
        assert b"".join(response.chunks()) == b"first"
    server.settle(connections=1)  # the server has closed the pooled connection
    with client.get(server.url("/b")) as response:
        assert response.status == 200
        assert b"".join(response.chunks()) == b"second"
    assert len(server.links) == 2
    assert [seen.target for seen in server.links[1].requests] == ["/b"]


def test_fresh_connection_closed_before_answer_is_retryable_and_not_retried(server, clients):
    server.script(None, ok(b"would be the retry"))
    with pytest.raises(Retryable):
        clients().get(server.url("/a"))
    assert len(server.requests) == 1


def test_stale_pooled_connection_then_a_fresh_one_also_closed_is_retryable(server, clients):
    server.script(Reply(ok(b"first"), close="close"), None, ok(b"third try"))
    client = clients()
    with client.get(server.url("/a")) as response:
        response.drain()
    server.settle(connections=1)
    with pytest.raises(Retryable):
        client.get(server.url("/b"))
    assert len(server.links) == 2  # one transparent retry, not more


# --------------------------------------------------------------------------
# 9. What the client sends: Host, target, and no header injection


def test_client_sends_host_with_port_user_agent_and_identity_encoding(server, clients):
    from modelsync import __version__

    server.script(ok())
    with clients().get(server.url("/models/a.bin?revision=main"), headers={"Range": "bytes=0-1"}) as response:
        response.drain()
    (seen,) = server.requests
    assert seen.line == "GET /models/a.bin?revision=main HTTP/1.1"
    assert seen.header("Host") == f"127.0.0.1:{server.port}"
    assert seen.header("User-Agent") == f"modelsync/{__version__}"
    assert seen.header("Accept-Encoding") == "identity"
    assert seen.header("Range") == "bytes=0-1"
    assert seen.header("Authorization") is None


def test_request_target_with_spaces_and_non_ascii_is_percent_encoded(server, connect):
    server.script(ok())
    connect().request("GET", "/models/my file é.bin?x=a b", {"Host": "h"})
    assert server.requests[0].target == "/models/my%20file%20%C3%A9.bin?x=a%20b"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Token": "abc\r\nInjected: yes"},
        {"X-Token": "abc\nInjected: yes"},
        {"X-Token": "abc\rInjected: yes"},
        {"X-Token\r\nInjected": "yes"},
        {"Injected: yes\r\nX": "1"},
    ],
    ids=["crlf-in-value", "lf-in-value", "cr-in-value", "crlf-in-name", "colon-in-name"],
)
def test_header_with_a_line_break_raises_valueerror_and_nothing_is_sent(server, connect, headers):
    connection = connect()
    with pytest.raises(ValueError):
        connection.request("GET", "/", {"Host": "h", **headers})
    connection.close()
    server.settle(connections=1)
    assert bytes(server.links[0].received) == b""


def test_request_target_with_control_characters_raises_valueerror(server, connect):
    connection = connect()
    with pytest.raises(ValueError):
        connection.request("GET", "/a\x00b", {"Host": "h"})
    connection.close()
    server.settle(connections=1)
    assert bytes(server.links[0].received) == b""


def test_client_refuses_a_header_with_crlf_and_no_injected_header_reaches_the_server(server, clients):
    server.script(ok(b"fine"))
    client = clients()
    with pytest.raises(SourceError):
        client.get(server.url("/a"), headers={"Authorization": "Bearer t\r\nInjected: yes"})
    with client.get(server.url("/b")) as response:  # the client still works
        assert b"".join(response.chunks()) == b"fine"
    client.close()
    server.settle()
    assert all(b"Injected" not in link.received for link in server.links)
    assert [seen.target for seen in server.requests] == ["/b"]


def test_client_url_with_crlf_does_not_inject_a_header(server, clients):
    server.script(ok(b"fine"))
    with clients().get(server.url("/a\r\nInjected: yes")) as response:
        response.drain()
    (seen,) = server.requests
    assert seen.header("Injected") is None
    assert " " not in seen.target


# --------------------------------------------------------------------------
# 10. Content-Encoding


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate"])
def test_encoded_body_is_decoded_by_chunks(server, clients, coding):
    data = b"model weights " * 5000
    encoded = zlib.compress(data) if coding == "deflate" else gzip.compress(data)
    server.script(Reply(ok(encoded, f"Content-Encoding: {coding}"), piece=1000))
    client = clients()
    with client.get(server.url("/w")) as response:
        assert response.encoding == coding
        assert response.length == len(encoded)
        assert b"".join(response.chunks(4096)) == data


def test_views_of_a_plain_body_are_all_in_the_callers_buffer(server, clients):
    data = os.urandom(300_000)
    server.script(ok(data))
    buffer = memoryview(bytearray(1 << 16))
    with clients().get(server.url("/f")) as response:
        pieces = [(piece.obj is buffer.obj, bytes(piece)) for piece in response.views(buffer)]
    assert all(in_buffer for in_buffer, _ in pieces)
    assert b"".join(piece for _, piece in pieces) == data


def test_views_of_a_gzip_body_are_decoded(server, clients):
    data = b"weights " * 5000
    encoded = gzip.compress(data)
    server.script(Reply(ok(encoded, "Content-Encoding: gzip"), piece=1000))
    with clients().get(server.url("/f")) as response:
        assert b"".join(bytes(piece) for piece in response.views(memoryview(bytearray(1024)))) == data


def test_empty_body_labelled_gzip_is_an_empty_file(server, clients):
    server.script(ok(b"", "Content-Encoding: gzip"))
    with clients().get(server.url("/empty")) as response:
        assert b"".join(response.chunks()) == b""


def test_br_encoded_body_is_a_source_error(server, clients):
    server.script(ok(b"\x8b\x02\x80hello\x03", "Content-Encoding: br"))
    with clients().get(server.url("/w")) as response, pytest.raises(SourceError, match="br"):
        list(response.chunks())


def test_gzip_label_on_bytes_that_are_not_gzip_is_a_source_error(server, clients):
    server.script(ok(b"this is not gzip at all", "Content-Encoding: gzip"))
    with clients().get(server.url("/w")) as response, pytest.raises(SourceError, match="does not decode"):
        list(response.chunks())


# --------------------------------------------------------------------------
# 11. Credentials: netrc, and Authorization dropped across hosts


def write_netrc(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "netrc"
    path.write_text(text)
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))


def test_netrc_credentials_are_sent_to_their_host(server, clients, tmp_path, monkeypatch):
    write_netrc(tmp_path, monkeypatch, "machine 127.0.0.1\n  login alice\n  password s3cr3t!\n")
    server.script(ok())
    with clients().get(server.url("/private")) as response:
        response.drain()
    assert server.requests[0].header("Authorization") == basic("alice", "s3cr3t!")


def test_netrc_credentials_for_another_host_are_not_sent(server, clients, tmp_path, monkeypatch):
    write_netrc(tmp_path, monkeypatch, "machine hub.example.com login alice password s3cr3t\n")
    server.script(ok())
    with clients().get(server.url("/public")) as response:
        response.drain()
    assert server.requests[0].header("Authorization") is None


def test_explicit_authorization_header_wins_over_netrc(server, clients, tmp_path, monkeypatch):
    write_netrc(tmp_path, monkeypatch, "machine 127.0.0.1 login alice password s3cr3t\n")
    server.script(ok())
    with clients().get(server.url("/"), headers={"authorization": "Bearer hf_token"}) as response:
        response.drain()
    assert server.requests[0].header("Authorization") == "Bearer hf_token"


def test_netrc_authorization_is_not_sent_after_a_redirect_to_another_host(servers, clients, tmp_path, monkeypatch):
    write_netrc(tmp_path, monkeypatch, "machine 127.0.0.1 login alice password s3cr3t\n")
    origin, cdn = servers(), servers()
    origin.script(redirect(cdn.url("/blob/abc", host="localhost")))
    cdn.script(ok(b"blob"))
    with clients().get(origin.url("/resolve/main/a.bin")) as response:
        assert b"".join(response.chunks()) == b"blob"
    assert origin.requests[0].header("Authorization") == basic("alice", "s3cr3t")
    (seen,) = cdn.requests
    assert seen.target == "/blob/abc"
    assert seen.header("Host") == f"localhost:{cdn.port}"
    assert seen.header("Authorization") is None


def test_authorization_header_is_dropped_on_a_redirect_to_another_port_and_kept_on_the_same_one(servers, clients):
    origin, other = servers(), servers()
    origin.script(redirect("/moved"), redirect(other.url("/elsewhere")))
    other.script(ok(b"there"))
    with clients().get(origin.url("/start"), headers={"Authorization": "Bearer hf_token"}) as response:
        assert b"".join(response.chunks()) == b"there"
    assert [seen.header("Authorization") for seen in origin.requests] == ["Bearer hf_token", "Bearer hf_token"]
    assert other.requests[0].header("Authorization") is None


# --------------------------------------------------------------------------
# 12. A plain-HTTP proxy from the environment


def test_http_url_goes_to_the_proxy_with_an_absolute_target_and_proxy_authorization(servers, clients, monkeypatch):
    proxy = servers()
    monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    proxy.script(ok(b"via proxy"), ok(b"again"))
    client = clients()
    with client.get("http://example.invalid/models/a.bin?rev=1") as response:
        assert b"".join(response.chunks()) == b"via proxy"
    with client.get("http://example.invalid:8081/b") as response:
        assert b"".join(response.chunks()) == b"again"
    first, second = proxy.requests
    assert first.line == "GET http://example.invalid/models/a.bin?rev=1 HTTP/1.1"
    assert first.header("Host") == "example.invalid"  # default port: not written
    assert first.header("Proxy-Authorization") == basic("user", "p@ss")
    assert second.line == "GET http://example.invalid:8081/b HTTP/1.1"
    assert second.header("Host") == "example.invalid:8081"


def test_no_proxy_host_is_reached_directly_without_proxy_credentials(servers, clients, monkeypatch):
    proxy, origin = servers(), servers()
    monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    origin.script(ok(b"direct"))
    with clients().get(origin.url("/x")) as response:
        assert b"".join(response.chunks()) == b"direct"
    assert proxy.requests == []
    (seen,) = origin.requests
    assert seen.target == "/x"
    assert seen.header("Proxy-Authorization") is None


@pytest.mark.parametrize("url", ["socks5://127.0.0.1:1080", "https://127.0.0.1:3128"])
def test_a_proxy_that_is_not_http_is_a_source_error(clients, monkeypatch, url):
    monkeypatch.setenv("HTTPS_PROXY", url)
    with pytest.raises(SourceError, match="http://"):
        clients().get("https://example.invalid/a")


# --------------------------------------------------------------------------
# 13. TLS: direct, through a CONNECT tunnel, and certificates not trusted


def make_certificate(folder: Path, name: str) -> tuple[str, str]:
    """A self-signed CA certificate for ``name`` and 127.0.0.1, made by openssl at test time."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need the openssl command to make a throwaway certificate (not on PATH)")
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
    ]  # fmt: skip
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {result.stderr.strip()[-300:]}")
    return str(cert), str(key)


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory) -> tuple[str, str]:
    """The test server's certificate: localhost and 127.0.0.1."""
    return make_certificate(tmp_path_factory.mktemp("tls"), "localhost")


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory) -> str:
    """A CA bundle that does not hold the test server's certificate."""
    return make_certificate(tmp_path_factory.mktemp("other-ca"), "other.invalid")[0]


@pytest.fixture
def tls_server(servers, tls_cert) -> WireServer:
    cert, key = tls_cert
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return servers(tls=context)


def untrust(monkeypatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def connect_proxy(servers) -> WireServer:
    """An HTTP proxy that answers CONNECT host:port with 200 and relays to 127.0.0.1:port."""
    proxy = servers()

    def respond(seen: Seen) -> Answer:
        if seen.method != "CONNECT":
            return b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
        port = int(seen.target.rsplit(":", 1)[1])
        return Reply(b"HTTP/1.1 200 Connection established\r\n\r\n", relay_to=port)

    proxy.respond = respond
    return proxy


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_direct_https_request_trusts_the_ca_bundle_from_the_environment(tls_server, clients, tls_cert, monkeypatch, variable):
    untrust(monkeypatch)
    monkeypatch.setenv(variable, tls_cert[0])
    tls_server.script(ok(b"secure"), ok(b"again"))
    client = clients()
    with client.get(tls_server.url("/s")) as response:
        assert b"".join(response.chunks()) == b"secure"
    with client.get(tls_server.url("/t")) as response:
        assert b"".join(response.chunks()) == b"again"
    assert [seen.target for seen in tls_server.requests] == ["/s", "/t"]
    assert tls_server.requests[0].header("Host") == f"127.0.0.1:{tls_server.port}"
    assert len(tls_server.links) == 1  # the TLS connection was pooled


def test_ssl_cert_file_is_trusted_when_no_requests_ca_bundle_is_set(tls_server, clients, tls_cert, monkeypatch):
    untrust(monkeypatch)
    monkeypatch.setenv("SSL_CERT_FILE", tls_cert[0])
    tls_server.script(ok(b"secure"))
    with clients().get(tls_server.url("/s", host="localhost")) as response:
        assert b"".join(response.chunks()) == b"secure"


def test_requests_ca_bundle_without_the_servers_ca_is_a_source_error(tls_server, clients, tls_cert, other_ca, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca)  # a valid bundle, not the server's CA
    monkeypatch.setenv("SSL_CERT_FILE", tls_cert[0])  # REQUESTS_CA_BUNDLE comes first
    tls_server.script(ok(b"must not be read"))
    with pytest.raises(SourceError, match="REQUESTS_CA_BUNDLE"):
        clients().get(tls_server.url("/s"))
    assert tls_server.requests == []


def test_certificate_for_another_name_is_a_source_error(tls_server, connect_proxy, clients, tls_cert, monkeypatch):
    # The CONNECT proxy relays any name to 127.0.0.1: the server's certificate names
    # localhost and 127.0.0.1, not the host the client asked for.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_cert[0])
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{connect_proxy.port}")
    tls_server.script(ok(b"must not be read"))
    with pytest.raises(SourceError, match="not trusted"):
        clients().get(f"https://models.example.com:{tls_server.port}/a")
    assert connect_proxy.requests[0].line == f"CONNECT models.example.com:{tls_server.port} HTTP/1.1"
    assert tls_server.requests == []


@pytest.mark.parametrize("close", ["close", "notify"], ids=["tcp-close", "tls-close-notify"])
def test_stale_pooled_tls_connection_is_retried_once_on_a_new_connection(tls_server, clients, tls_cert, monkeypatch, close):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_cert[0])
    tls_server.script(Reply(ok(b"first"), close=close), ok(b"second"))
    client = clients()
    with client.get(tls_server.url("/a")) as response:
        assert b"".join(response.chunks()) == b"first"
    tls_server.settle(connections=1)
    with client.get(tls_server.url("/b")) as response:
        assert b"".join(response.chunks()) == b"second"
    assert len(tls_server.links) == 2


def test_https_through_a_connect_proxy_reaches_the_tls_server(tls_server, connect_proxy, clients, tls_cert, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_cert[0])
    monkeypatch.setenv("HTTPS_PROXY", f"http://tunnel:pw@127.0.0.1:{connect_proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    tls_server.script(ok(b"tunnelled"), ok(b"same tunnel"))
    client = clients()
    with client.get(tls_server.url("/secure/a.bin", host="localhost")) as response:
        assert response.status == 200
        assert b"".join(response.chunks()) == b"tunnelled"
    with client.get(tls_server.url("/secure/b.bin", host="localhost")) as response:
        assert b"".join(response.chunks()) == b"same tunnel"
    (connect,) = connect_proxy.requests  # one tunnel, reused
    assert connect.line == f"CONNECT localhost:{tls_server.port} HTTP/1.1"
    assert connect.header("Host") == f"localhost:{tls_server.port}"
    assert connect.header("Proxy-Authorization") == basic("tunnel", "pw")
    first, second = tls_server.requests
    assert first.line == "GET /secure/a.bin HTTP/1.1"  # origin-form inside the tunnel
    assert first.header("Host") == f"localhost:{tls_server.port}"
    assert first.header("Proxy-Authorization") is None  # the proxy's credentials stay with the proxy
    assert second.target == "/secure/b.bin"


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "through-connect-proxy"])
def test_untrusted_certificate_is_a_source_error_naming_requests_ca_bundle(
    tls_server, connect_proxy, clients, monkeypatch, through_proxy
):
    untrust(monkeypatch)
    if through_proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{connect_proxy.port}")
        monkeypatch.setenv("NO_PROXY", "")
    tls_server.script(ok(b"must not be read"))
    with pytest.raises(SourceError) as caught:
        clients().get(tls_server.url("/s", host="localhost"))
    assert "REQUESTS_CA_BUNDLE" in str(caught.value)
    assert tls_server.requests == []
    assert len(connect_proxy.requests) == (1 if through_proxy else 0)


def test_proxy_refusing_the_tunnel_fails_without_reaching_the_server(tls_server, servers, clients, tls_cert, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_cert[0])
    proxy = servers()
    proxy.script(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    with pytest.raises(SourceError, match="407") as raised:  # credentials: no retry would help
        clients().get(tls_server.url("/s", host="localhost"))
    assert "HTTPS_PROXY" in (raised.value.hint or "")
    assert tls_server.links == []


# --------------------------------------------------------------------------
# 14. Redirects: no HTTPS -> HTTP downgrade, at most 10


def test_https_to_http_redirect_is_refused(tls_server, server, clients, tls_cert, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_cert[0])
    tls_server.script(redirect(server.url("/plain")))
    server.script(ok(b"plain"))
    with pytest.raises(SourceError, match="plain HTTP"):
        clients().get(tls_server.url("/s"))
    assert server.requests == []


def test_http_to_https_redirect_is_followed(tls_server, server, clients, tls_cert, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_cert[0])
    server.script(redirect(tls_server.url("/upgraded"), status=301))
    tls_server.script(ok(b"upgraded"))
    with clients().get(server.url("/plain")) as response:
        assert response.url == tls_server.url("/upgraded")
        assert b"".join(response.chunks()) == b"upgraded"


def test_http_to_https_then_back_to_http_is_refused(tls_server, server, clients, tls_cert, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_cert[0])
    server.script(redirect(tls_server.url("/upgraded"), status=301), ok(b"plain again"))
    tls_server.script(redirect(server.url("/downgraded")))
    with pytest.raises(SourceError, match="plain HTTP"):
        clients().get(server.url("/plain"))
    assert [seen.target for seen in server.requests] == ["/plain"]


def hop_server(server: WireServer, hops: int) -> None:
    """/hop0 redirects to /hop1 (a relative Location) ... /hop<hops> answers 200."""

    def respond(seen: Seen) -> Answer:
        n = int(seen.target.removeprefix("/hop"))
        if n >= hops:
            return ok(b"arrived")
        status = (301, 302, 303, 307, 308)[n % 5]
        return redirect(f"/hop{n + 1}", status, body=b'<a href="/hop">moved</a>')

    server.respond = respond


def test_ten_redirects_are_followed(server, clients):
    hop_server(server, 10)
    with clients().get(server.url("/hop0")) as response:
        assert response.status == 200
        assert response.url == server.url("/hop10")
        assert b"".join(response.chunks()) == b"arrived"
    assert len(server.requests) == 11
    assert len(server.links) == 1  # each redirect's small body drained, the connection reused


def test_more_than_ten_redirects_is_a_source_error(server, clients):
    hop_server(server, 1000)
    with pytest.raises(SourceError, match="more than 10"):
        clients().get(server.url("/hop0"))
    assert len(server.requests) == 11


def test_redirect_without_location_is_a_source_error(server, clients):
    server.script(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(SourceError, match="without a Location"):
        clients().get(server.url("/"))


def test_redirect_to_a_non_http_scheme_is_a_source_error(server, clients):
    server.script(redirect("file:///etc/passwd"))
    with pytest.raises(SourceError, match="not HTTP"):
        clients().get(server.url("/"))


# --------------------------------------------------------------------------
# Abort


def test_abort_unblocks_a_read_waiting_for_a_stalled_body(server, clients):
    server.script(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123")  # then silence
    client = Client(policy=RetryPolicy(attempts=1, read_timeout=10.0))
    try:
        with client.get(server.url("/stall")) as response:
            timer = threading.Timer(0.1, client.abort)
            timer.start()
            started = time.monotonic()
            with pytest.raises(OSError):
                for _ in response.chunks():
                    pass
            assert time.monotonic() - started < 2.0
            timer.join()
    finally:
        client.close()


# --------------------------------------------------------------------------
# Regressions: bugs found while these tests were written (fixed since).


# was a bug: int(size, 16) accepts '-1', so framing bytes are returned as body
def test_negative_chunk_size_is_a_protocol_error_before_any_body_byte(server, connect):
    server.script(CHUNKED_HEAD + b"-1\r\nhello\r\n0\r\n\r\n")
    response = connect().request("GET", "/", {"Host": "h"})
    got = []
    with pytest.raises(_http1.ProtocolError):
        while data := response.read1(1 << 16):
            got.append(data)
    assert got == []  # was: [b"hello\r\n0\r\n\r"], then a ProtocolError


# was a bug: str.isdigit() is true for latin-1 superscripts, int() then raises ValueError
@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nhi", b"HTTP/1.1 2\xb20 OK\r\nContent-Length: 2\r\n\r\nhi"],
    ids=["content-length", "status-code"],
)
def test_non_ascii_digits_in_a_response_head_are_a_protocol_error(server, connect, reply):
    server.script(reply)
    with pytest.raises(_http1.ProtocolError):  # was: ValueError (Client: SourceError "cannot request ...")
        connect().request("GET", "/", {"Host": "h"})


# was a bug: a stray CRLF is skipped only when it starts a fresh recv, not when already buffered
def test_stray_crlf_after_a_body_does_not_break_the_next_response(server, connect):
    server.script(ok(b"hi") + b"\r\n", ok(b"yo"))  # the CRLF comes in the same segment as the body
    connection = connect()
    assert read_all(connection.request("GET", "/1", {"Host": "h"})) == b"hi"
    # was: ProtocolError("not an HTTP/1.x response: ''")
    assert read_all(connection.request("GET", "/2", {"Host": "h"})) == b"yo"


# was a bug: chunks() never checks decoder.eof, a cut gzip stream decodes to a short file
def test_truncated_gzip_stream_is_an_error_not_a_short_file(server, clients):
    data = os.urandom(50_000)
    cut = gzip.compress(data)[:-3000]  # framing complete (Content-Length matches), the gzip stream is not
    server.script(ok(cut, "Content-Encoding: gzip"))
    with clients().get(server.url("/w")) as response, pytest.raises((SourceError, OSError)):
        b"".join(response.chunks())  # was: 47,000-odd bytes of 50,000, no error
