"""HTTP/1.1 on one socket: a request out, a response's head and body in.

What a download client needs and no more: GET and HEAD without a request
body, bodies framed by Content-Length, chunked transfer coding or the end of
the connection, interim 1xx answers skipped, keep-alive, pipelining (requests
sent ahead, answers read in order: pipeline.py), and a CONNECT tunnel for
HTTPS through a proxy.

Why not http.client: it parses every response head with the ``email``
package, about 60 µs a response on the machines we measure on, which is more
than the rest of the request costs. A download of 2000 small files paid for
it 2000 times (docs/performance.md). Here a head is split and partitioned in
place, and bytes read past it stay in the connection's buffer.

Every failure is an ``OSError`` (a dropped connection, a stall, a reply that
is not HTTP), so callers handle one family.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import quote

MAX_HEAD = 64 * 1024  # bytes of a response head; http.client allows 100 lines of 64 KiB
MAX_HEADERS = 100
RECV = 256 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"  # what stays as is when a target must be percent-encoded
# In a lower-cased head, what makes an answer more than plain (``plain_body``):
# a coding, a folded line, "close" anywhere (Connection: close, or a value that
# merely holds the word: the general path then reads it, no harm done).
_NOT_PLAIN = re.compile(rb"\r\ntransfer-encoding:|\r\ncontent-encoding:|\r\n[ \t]|close")


class ProtocolError(ConnectionError):
    """The peer's reply is not HTTP/1.x we can read (the connection is not reused)."""


class ProxyAuthRequired(PermissionError):
    """The proxy answered CONNECT with 407: a settings problem, not worth a retry."""


class ClosedBeforeAnswer(ConnectionResetError):
    """The connection closed before a status line: a kept-alive one the server
    had already dropped, which is worth one more try on a fresh connection."""


class Headers:
    """Response headers, looked up without regard to case; repeated ones joined by ", "."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, tuple[str, str]]) -> None:
        self._fields = fields  # lower-cased name -> (name as sent, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        field = self._fields.get(name.lower())
        return default if field is None else field[1]

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields.values())

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class Connection:
    """One HTTP/1.1 connection. Not thread-safe: one thread at a time, which sends a
    request and reads its answer (``request``), or sends several ahead (``send``)
    and reads their answers in order (``response``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Bytes received; those before _start are consumed. An offset, not a slice
        # of what is left: a read of 256 KiB holds a dozen pipelined answers, and
        # slicing off each answer's head and body copied the rest every time
        # (~25 µs an answer of 16 KiB).
        self._buffer = b""
        self._start = 0

    # -- requests ---------------------------------------------------------------

    def request(self, method: str, target: str, headers: dict[str, str]) -> "Response":
        """Send a request without a body and read the head of its final response."""
        self.sock.sendall(request_bytes(method, target, headers))
        return self._read_response(method)

    def send(self, requests: bytes) -> None:
        """Requests made by ``request_bytes``, sent ahead of their answers (pipelined):
        ``response`` then reads the answers, in the order the requests went out."""
        self.sock.sendall(requests)

    def response(self, method: str = "GET") -> "Response":
        """The head of the next answer on this connection."""
        return self._read_response(method)

    def plain_body(self, size: int) -> bytes | None:
        """The whole body of the next answer when the answer is the plainest there
        is: ``HTTP/1.1 200``, one Content-Length of exactly ``size``, no transfer
        or content coding, no folded line, nothing that says "close". For any other
        answer None, with nothing consumed: ``response`` then reads it (and says
        what is wrong with it).

        Why: a pipelined stream of small files gets almost only such answers, and
        taking one here is a few byte searches, where ``response`` decodes the
        head, builds a table of its fields and a Response: an answer of 16 KiB,
        its blake3 included, took 12.3 µs instead of 18.5 (measured alone)."""
        buffer, start = self._buffer, self._start
        searched = 0
        while (end := buffer.find(b"\r\n\r\n", start + max(0, searched - 3))) < 0:
            if len(buffer) - start > MAX_HEAD or not (data := self.sock.recv(RECV)):
                return None
            searched = len(buffer) - start
            self._buffer, self._start = buffer, start = buffer[start:] + data, 0
        if not buffer.startswith(b"HTTP/1.1 200 ", start):
            return None
        head = buffer[start:end].lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0 or head.find(b"\r\ncontent-length:", at + 17) >= 0 or _NOT_PLAIN.search(head) is not None:
            return None
        line_end = head.find(b"\r\n", at + 17)
        value = head[at + 17 : line_end if line_end >= 0 else len(head)].strip(b" \t")
        if not value.isdigit() or int(value) != size:  # bytes.isdigit(): ASCII digits only
            return None
        body_start = end + 4
        if len(buffer) - body_start >= size:  # the usual case: a read holds a dozen answers
            self._start = body_start + size
            return buffer[body_start : body_start + size]
        # The rest of the body, and not a byte more: reading ahead here (a full
        # RECV) left the server's answers queued longer, and made a sync of
        # 2000 × 16 KiB 10 % slower for the same CPU time.
        pieces = [buffer[body_start:]]
        missing = size - len(pieces[0])
        while missing > 0:
            if not (data := self.sock.recv(min(missing, RECV))):
                self._buffer, self._start = buffer[start:] + b"".join(pieces[1:]), 0  # all back: ``response`` says what is missing
                return None
            pieces.append(data)
            missing -= len(data)
        self._buffer, self._start = b"", 0
        return b"".join(pieces)

    def tunnel(self, host: str, port: int, headers: dict[str, str]) -> None:
        """CONNECT through the proxy at the other end to ``host:port`` (before TLS)."""
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        response = self.request("CONNECT", authority, {"Host": authority, **headers})
        if response.status == 407:
            raise ProxyAuthRequired(f"the proxy wants credentials for the tunnel to {authority}: 407 {response.reason}")
        if not 200 <= response.status < 300:
            raise OSError(f"the proxy refused the tunnel to {authority}: {response.status} {response.reason}")
        if len(self._buffer) > self._start:
            raise ProtocolError("the proxy sent bytes before the tunnel was open")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- reading ----------------------------------------------------------------

    def _read_response(self, method: str) -> "Response":
        while True:
            head = self._read_head()
            status_line, _, rest = head.partition("\r\n")
            version, status, reason = _status_line(status_line)
            headers = _headers(rest)
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue, 103 Early Hints: the real answer follows
            return Response(self, method, version, status, reason, headers)

    def _read_head(self) -> str:
        buffer, start = self._buffer, self._start
        searched = 0  # bytes after start known to hold no head's end (a head sent a byte at a time stays linear)
        while True:
            while buffer[start : start + 1] in (b"\r", b"\n"):  # stray empty lines before a status line (RFC 9112, 2.2)
                start += 1
            end = buffer.find(b"\r\n\r\n", start + max(0, searched - 3))
            if end >= 0:
                self._buffer, self._start = buffer, end + 4
                return buffer[start:end].decode("latin-1")
            if len(buffer) - start > MAX_HEAD:
                raise ProtocolError(f"the response head is longer than {MAX_HEAD} bytes")
            data = self.sock.recv(RECV)
            if not data:
                if len(buffer) > start:
                    raise ProtocolError("the connection closed in the middle of a response head")
                raise ClosedBeforeAnswer("the server closed the connection without answering")
            searched = len(buffer) - start
            buffer, start = buffer[start:] + data, 0  # what is left of the last read is a head's start: short

    def _recv(self, limit: int) -> bytes:
        """Up to ``limit`` bytes: buffered ones first, else one read from the socket."""
        start = self._start
        if start < len(self._buffer):
            data = self._buffer[start : start + limit]
            self._start = start + len(data)
            return data
        return self.sock.recv(min(limit, RECV))

    def _recv_into(self, view: memoryview) -> int:
        """``_recv`` into ``view``: buffered bytes first, else one read from the socket."""
        start = self._start
        count = min(len(self._buffer) - start, len(view))
        if count > 0:
            view[:count] = memoryview(self._buffer)[start : start + count]
            self._start = start + count
            return count
        return self.sock.recv_into(view)

    def _line(self) -> bytes:
        """One CRLF-terminated line (of a chunked body), without its end."""
        while (end := self._buffer.find(b"\r\n", self._start)) < 0:
            if len(self._buffer) - self._start > MAX_HEAD:
                raise ProtocolError("a line of the chunked body is too long")
            data = self.sock.recv(RECV)
            if not data:
                raise ProtocolError("the connection closed in the middle of a chunked body")
            self._buffer, self._start = self._buffer[self._start :] + data, 0
        line = self._buffer[self._start : end]
        self._start = end + 2
        return line


class Response:
    """The head of a response, and its body read in pieces."""

    def __init__(self, connection: Connection, method: str, version: str, status: int, reason: str, headers: Headers) -> None:
        self._connection = connection
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        fields = headers._fields  # by their lower-case names: Headers.get() lowers each name
        connection_tokens = _tokens(field[1] if (field := fields.get("connection")) else None)
        self.will_close = "close" in connection_tokens or (version == "HTTP/1.0" and "keep-alive" not in connection_tokens)
        self._chunked = False
        self._chunk_left = 0
        self._left: int | None  # body bytes still to come; None: until the connection closes
        self.length: int | None = None  # the body's size, when Content-Length frames it
        tunnel_open = method == "CONNECT" and 200 <= status < 300
        if method == "HEAD" or tunnel_open or status in (204, 304):
            self._left = 0
        elif "transfer-encoding" in fields and "chunked" in _tokens(fields["transfer-encoding"][1]):
            self._chunked, self._left = True, None
        elif (length := fields.get("content-length")) is not None:
            self._left = self.length = _content_length(length[1])
        else:
            self._left, self.will_close = None, True
        self.complete = self._left == 0

    def read1(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body, from at most one read of the socket; b"" at its end."""
        if self.complete:
            return b""
        if self._chunked:
            return self._read_chunk(size)
        if self._left is None:  # delimited by the end of the connection
            data = self._connection._recv(size)
            if not data:
                self.complete = True
            return data
        data = self._connection._recv(min(size, self._left))
        self._took(len(data))
        return data

    def readinto1(self, view: memoryview) -> int:
        """``read1`` into ``view``, a buffer the caller reuses: a read then needs no new
        memory (a new bytes object of 256 KiB a read had the kernel fault in and zero
        its pages: ~8 % of the CPU time of a download of 200 × 1 MiB). 0 at the end."""
        if self.complete or self._chunked:  # a chunked file is rare: read, then copied in
            data = self.read1(len(view))
            view[: len(data)] = data
            return len(data)
        if self._left is None:
            count = self._connection._recv_into(view)
            self.complete = not count
            return count
        count = self._connection._recv_into(view[: self._left] if self._left < len(view) else view)
        self._took(count)
        return count

    def _took(self, count: int) -> None:
        """``count`` bytes of a body framed by Content-Length came (none: it was cut short)."""
        if not count:
            self.will_close = True
            raise ProtocolError(f"the connection closed with {self._left} bytes of the body still to come")
        self._left -= count  # type: ignore[operator]
        self.complete = self._left == 0

    def read(self, limit: int) -> bytes:
        """The rest of the body, when it is at most ``limit`` bytes (else what came by then)."""
        pieces: list[bytes] = []
        got = 0
        while got < limit and (data := self.read1(limit - got)):
            pieces.append(data)
            got += len(data)
        return b"".join(pieces)

    def _read_chunk(self, size: int) -> bytes:
        connection = self._connection
        if self._chunk_left == 0:
            line = connection._line()
            digits = line.split(b";", 1)[0].strip()
            if not digits or digits.strip(b"0123456789abcdefABCDEF"):  # int() would take "-1", "+1", "1_0"
                raise ProtocolError(f"bad chunk size {digits[:40]!r} in a chunked body")
            self._chunk_left = int(digits, 16)
            if self._chunk_left == 0:
                while connection._line():  # trailers, up to the empty line
                    pass
                self.complete = True
                return b""
        data = connection._recv(min(size, self._chunk_left))
        if not data:
            self.will_close = True
            raise ProtocolError("the connection closed in the middle of a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and connection._line():
            raise ProtocolError("a chunk did not end with CRLF")
        return data


def request_bytes(method: str, target: str, headers: dict[str, str]) -> bytes:
    return request_line(method, target) + header_block(headers)


def request_line(method: str, target: str) -> bytes:
    if not target.isascii() or " " in target:
        target = quote(target, safe=_TARGET_SAFE)  # as requests does with a URL typed with spaces or accents
    if _CONTROL.search(target):
        raise ValueError(f"the request target {target!r} has control characters")
    return f"{method} {target} HTTP/1.1\r\n".encode("latin-1")


def header_block(headers: dict[str, str]) -> bytes:
    """The header lines of a request and the empty line that ends them (the same
    block serves every request of a pipelined stream)."""
    lines = []
    for name, value in headers.items():
        value = str(value)
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} has a line break or colon where it must not")
        lines.append(f"{name}: {value}\r\n")
    try:
        return ("".join(lines) + "\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("a request header has characters outside Latin-1") from None


def _status_line(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not _digits(code):
        raise ProtocolError(f"not an HTTP/1.x response: {line[:80]!r}")
    return version, int(code), reason.strip()


def _headers(block: str) -> Headers:
    fields: dict[str, tuple[str, str]] = {}
    last = ""
    lines = block.split("\r\n") if block else []
    if len(lines) > MAX_HEADERS:
        raise ProtocolError(f"the response has more than {MAX_HEADERS} header lines")
    for line in lines:
        if line[:1] in (" ", "\t") and last:  # an obsolete folded continuation line
            name, value = fields[last]
            fields[last] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {line[:80]!r}")
        key, value = name.lower(), value.strip()
        if key in fields:
            value = f"{fields[key][1]}, {value}"
        fields[key] = (name, value)
        last = key
    return Headers(fields)


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in value.split(",")} if value else set()


def _content_length(value: str) -> int:
    if _digits(value):
        return int(value)
    # Repeated Content-Length headers arrive joined; they must agree (RFC 9110, 8.6).
    lengths = {item.strip() for item in value.split(",")}
    if len(lengths) != 1 or not _digits(length := lengths.pop()):
        raise ProtocolError(f"bad Content-Length {value[:40]!r}")
    return int(length)


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() then refuses."""
    return text.isascii() and text.isdigit()
