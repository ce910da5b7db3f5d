"""A small HTTP/1.1 client for downloads, on the wire format of ``_http1``.

Why not requests: measured on loopback, a GET of a 16 KiB file costs 1.2 ms
through a requests Session, 0.54 ms through urllib3's pool, 0.34 ms through
http.client and about 0.15 ms through ``_http1`` (bench notes in
docs/performance.md). A sync of 2000 small files pays that 2000 times. What
users rely on from requests is kept:

- proxies from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``;
  an HTTPS URL goes through the proxy by CONNECT);
- certificates: ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``, else
  ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, else certifi's bundle and the system's;
- credentials from ``~/.netrc`` (or ``NETRC``), for the host they name only;
- redirects, with the ``Authorization`` header dropped when the host changes
  (the Hugging Face Hub redirects to a CDN) and no HTTPS → HTTP downgrade.

Connections are pooled per host and reused by every worker thread.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
import zlib
from typing import TYPE_CHECKING, Iterator, NamedTuple
from urllib.parse import unquote, urljoin, urlsplit

from . import __version__, _env, _http1
from .errors import NetworkError, SourceError

if TYPE_CHECKING:
    import ssl  # imported when a first HTTPS connection needs it (6 ms a plain-HTTP sync saves)

CHUNK = 1 << 20
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10


class RetryPolicy(NamedTuple):
    """How hard a download tries. Every knob has an environment variable."""

    attempts: int = 5  # MODELSYNC_HTTP_RETRIES: tries per file, the first one included
    backoff: float = 0.5  # MODELSYNC_HTTP_BACKOFF: seconds before the first retry; doubles each time
    max_backoff: float = 20.0
    max_time: float = 300.0  # MODELSYNC_HTTP_RETRY_MAX_TIME: no new try after this many seconds of failing
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # MODELSYNC_HTTP_TIMEOUT: a stall, no byte for this long, is a failure

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        default = cls()
        return cls(
            attempts=_env.integer(_env.HTTP_RETRIES, example="5") or default.attempts,
            backoff=_env.seconds(_env.HTTP_BACKOFF, default.backoff),
            max_time=_env.seconds(_env.HTTP_RETRY_MAX_TIME, default.max_time),
            read_timeout=_env.seconds(_env.HTTP_TIMEOUT, default.read_timeout, positive=True),
            connect_timeout=min(default.connect_timeout, _env.seconds(_env.HTTP_TIMEOUT, default.connect_timeout, positive=True)),
        )

    def delay(self, failures: int, retry_after: float | None) -> float:
        """Seconds to wait after the ``failures``-th failure: exponential, with jitter
        (many clients must not retry in step), at least what the server asked for."""
        import random  # here, on a retry: its import would cost every sync ~2 ms

        delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        delay *= 0.5 + random.random() / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff * 3))
        return delay


class Retryable(Exception):
    """A failure worth another try (a dropped connection, a 503, a stall)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def redact(text: str) -> str:
    """Hide credentials written into URLs (``https://user:secret@host``) in a message."""
    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", r"\1***@", text)


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number or an HTTP date; None when absent or malformed."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # only for a date, which is rare

    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# -- responses -------------------------------------------------------------


class Response:
    """A response whose body is read in chunks; ``close()`` gives the connection back
    to the pool when the body was read to its end, and drops it otherwise."""

    def __init__(self, client: "Client", key: tuple, connection: _http1.Connection, raw: _http1.Response, url: str) -> None:
        self._client = client
        self._key = key
        self._connection: _http1.Connection | None = connection
        self._raw = raw
        self.url = url
        self.status = raw.status
        self.reason = raw.reason
        self.headers = raw.headers
        self.encoding = (raw.headers.get("Content-Encoding") or "identity").strip().lower()

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def length(self) -> int | None:
        """Content-Length as a number (of encoded bytes, when encoded)."""
        value = self.headers.get("Content-Length", "")
        return int(value) if value.strip().isdigit() else None

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body, decoded: gzip and deflate are undone; an encoding we cannot undo is an error.

        Each chunk is what one read from the socket brought (``read1``): a stall
        or a drop loses nothing that arrived before it."""
        if self.encoding in ("identity", ""):
            while block := self._raw.read1(size):
                yield block
        elif self.encoding in ("gzip", "x-gzip", "deflate"):
            # wbits 47: a gzip or a zlib header, detected from the first bytes.
            decoder = zlib.decompressobj(47)
            received = False
            try:
                while block := self._raw.read1(size):
                    received = True
                    yield decoder.decompress(block)
                yield decoder.flush()
            except zlib.error as error:
                raise SourceError(f"{redact(self.url)} sent a {self.encoding} body that does not decode: {error}") from None
            if received and not decoder.eof:  # the framing was complete but the stream was cut: a short file otherwise
                raise _http1.ProtocolError(f"the {self.encoding} stream from {redact(self.url)} ended before its end")
        else:
            raise SourceError(
                f"{redact(self.url)} was sent with Content-Encoding: {self.encoding}, which modelsync cannot decode",
                hint="the server should send the file as stored (modelsync asks for Accept-Encoding: identity)",
            )

    def views(self, buffer: memoryview) -> Iterator[memoryview | bytes]:
        """The body, decoded, as ``chunks`` gives it, but read into ``buffer``: each
        piece is a view of it, good until the next piece is asked for, so a long
        download reuses one buffer instead of a new bytes object a read. (An
        encoded body comes as ``chunks`` decodes it.)"""
        if self.encoding not in ("identity", ""):
            yield from self.chunks(len(buffer))
            return
        while count := self._raw.readinto1(buffer):
            yield buffer[:count]

    def drain(self, limit: int = 64 * 1024) -> None:
        """Read a small body to its end so the connection can be reused."""
        try:
            self._raw.read(limit)
        except OSError:
            self._drop()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._raw.complete and not self._raw.will_close:
            self._client._give_back(self._key, connection)
        else:
            connection.close()
            self._client._forget(connection)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            self._client._forget(connection)

    def __enter__(self) -> "Response":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- the client ------------------------------------------------------------


class Client:
    """Thread-safe: one per sync, shared by every worker."""

    def __init__(self, pool_size: int = 8, policy: RetryPolicy | None = None) -> None:
        self.pool_size = pool_size
        self.policy = policy or RetryPolicy.from_env()
        self._idle: dict[tuple, list[_http1.Connection]] = {}
        self._busy: set[_http1.Connection] = set()
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._netrc: object = None  # netrc.netrc, False when there is none
        self._proxies = _proxies_from_env()
        self._closed = False

    # The public call -------------------------------------------------------

    def get(self, url: str, headers: dict[str, str] | None = None, *, method: str = "GET") -> Response:
        """GET (or HEAD) ``url``, following redirects. The caller closes the response."""
        headers = self.default_headers(headers)
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._request(current, headers, method)
            if response.status not in REDIRECT_STATUS:
                return response
            location = response.header("Location")
            response.drain()
            response.close()
            if not location:
                raise SourceError(f"{redact(current)} answered HTTP {response.status} without a Location")
            target = urljoin(current, location)
            if "https" in (urlsplit(url).scheme.lower(), urlsplit(current).scheme.lower()) and urlsplit(target).scheme.lower() != "https":
                raise SourceError(
                    f"{redact(url)} redirected to plain HTTP ({redact(target)})",
                    hint="refusing a downgrade from HTTPS; ask the host to fix it",
                )
            if urlsplit(target).scheme.lower() not in ("http", "https"):
                raise SourceError(f"{redact(url)} redirected to {redact(target)}, which is not HTTP(S)")
            if _authority(target) != _authority(current):
                # Credentials were meant for the first host only (a token for the Hub
                # must not reach the CDN it redirects to).
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            current = target
        raise SourceError(f"{redact(url)} redirected more than {MAX_REDIRECTS} times", hint="check the URL in models.toml")

    def abort(self) -> None:
        """Unblock every read in progress (Ctrl-C): their sockets are shut down."""
        with self._lock:
            self._closed = True
            busy = list(self._busy)
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for connection in busy + idle:
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for connection in idle:
            connection.close()

    # Connections -----------------------------------------------------------

    def route(self, url: str, headers: dict[str, str]) -> tuple[tuple, str, dict[str, str]]:
        """Where a GET of ``url`` goes: the pool key (scheme, host, port, proxy), the
        request target, and the headers to send (Host, netrc credentials, proxy's)."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"{redact(url)} is not an http(s) URL", hint="check the URL in models.toml")
        if parts.username or parts.password:
            raise SourceError(f"{redact(url)} carries credentials in the URL", hint="put them in ~/.netrc instead")
        host = parts.hostname
        port = parts.port or (443 if scheme == "https" else 80)
        proxy = self._proxy_for(scheme, host)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        sent = {"Host": _host_header(host, parts.port, scheme), **headers}
        if not any(k.lower() == "authorization" for k in sent):
            credentials = self._netrc_for(host)
            if credentials is not None:
                sent["Authorization"] = credentials
        if proxy is not None and scheme == "http":
            target = f"http://{parts.netloc}{target}"  # a plain proxy wants the absolute URL
            if proxy[2]:
                sent["Proxy-Authorization"] = proxy[2]
        return (scheme, host, port, proxy), target, sent

    def default_headers(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        return {"User-Agent": f"modelsync/{__version__}", "Accept-Encoding": "identity", **(headers or {})}

    def open(self, key: tuple) -> _http1.Connection:
        """A fresh connection of its own to the pool key's server (a pipelined stream's):
        ``abort`` shuts it down too; give it back with ``finish``."""
        connection, _ = self._connection(key, fresh=True)
        return connection

    def finish(self, key: tuple, connection: _http1.Connection, *, reusable: bool) -> None:
        if reusable:
            self._give_back(key, connection)
        else:
            self._discard(connection)

    def _request(self, url: str, headers: dict[str, str], method: str = "GET") -> Response:
        key, target, sent = self.route(url, headers)
        host = key[1]
        # A pooled connection may have been closed by the server while idle: that
        # failure, before any response, is retried once on a fresh connection.
        for fresh in (False, True):
            connection, reused = self._connection(key, fresh)
            try:
                raw = connection.request(method, target, sent)
            except (_http1.ClosedBeforeAnswer, ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as error:
                self._discard(connection)
                if reused and not fresh:
                    continue
                raise Retryable(f"connection lost: {_describe(error)}") from None
            except _cert_error() as error:
                self._discard(connection)
                raise SourceError(
                    f"TLS certificate of {host} not trusted: {error.verify_message}",
                    hint="for a private CA set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to its bundle",
                ) from None
            except OSError as error:
                self._discard(connection)
                if self._closed:
                    raise NetworkError("interrupted") from None
                raise Retryable(_describe(error)) from None
            except ValueError as error:  # a header or URL that cannot be sent as it is
                self._discard(connection)
                raise SourceError(f"cannot request {redact(url)}: {error}") from None
            return Response(self, key, connection, raw, url)
        raise AssertionError("unreachable")

    def _connection(self, key: tuple, fresh: bool) -> tuple[_http1.Connection, bool]:
        with self._lock:
            if self._closed:
                raise NetworkError("interrupted")
            idle = self._idle.get(key)
            if idle and not fresh:
                connection = idle.pop()
                self._busy.add(connection)
                return connection, True
        connection = self._connect(key)
        with self._lock:
            self._busy.add(connection)
        return connection, False

    def _connect(self, key: tuple) -> _http1.Connection:
        scheme, host, port, proxy = key
        policy = self.policy
        sock = None
        try:
            name, number = (host, port) if proxy is None else proxy[:2]
            # An ASCII name as bytes: a str would import the idna codec (5 ms) to encode it.
            sock = socket.create_connection((name.encode() if name.isascii() else name, number), timeout=policy.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if proxy is not None and scheme == "https":
                _http1.Connection(sock).tunnel(host, port, {"Proxy-Authorization": proxy[2]} if proxy[2] else {})
            if scheme == "https":
                sock = self._ssl_context().wrap_socket(sock, server_hostname=host)
        except _cert_error() as error:
            _close(sock)
            raise SourceError(
                f"TLS certificate of {host} not trusted: {error.verify_message}",
                hint="for a private CA set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to its bundle",
            ) from None
        except _http1.ProxyAuthRequired as error:
            _close(sock)
            raise SourceError(str(error), hint="put the proxy's user and password in HTTPS_PROXY (http://user:password@host:port)") from None
        except socket.gaierror as error:
            _close(sock)
            raise Retryable(f"cannot resolve {host}: {error.strerror}") from None
        except OSError as error:
            _close(sock)
            raise Retryable(f"cannot connect to {host}:{port}: {_describe(error)}") from None
        sock.settimeout(policy.read_timeout)  # from now on the timeout is a stall timeout
        return _http1.Connection(sock)

    def _give_back(self, key: tuple, connection: _http1.Connection) -> None:
        with self._lock:
            self._busy.discard(connection)
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.pool_size and not self._closed:
                idle.append(connection)
                return
        connection.close()

    def _forget(self, connection: _http1.Connection) -> None:
        with self._lock:
            self._busy.discard(connection)

    def _discard(self, connection: _http1.Connection) -> None:
        connection.close()
        self._forget(connection)

    # What requests would have read from the environment ----------------------

    def _ssl_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl is None:
                self._ssl = _ssl_context()
            return self._ssl

    def _netrc_for(self, host: str) -> str | None:
        if self._netrc is None:
            self._netrc = _load_netrc()
        if not self._netrc:
            return None
        entry = self._netrc.authenticators(host)  # type: ignore[attr-defined]
        if not entry:
            return None
        login, _, password = entry
        return _basic(login or "", password or "")

    def _proxy_for(self, scheme: str, host: str) -> tuple[str, int, str | None] | None:
        proxy = self._proxies.get(scheme) or self._proxies.get("all")
        if not proxy:
            return None
        import urllib.request

        if urllib.request.proxy_bypass_environment(host, self._proxies):
            return None
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.scheme.lower() != "http" or not parts.hostname:
            raise SourceError(
                f"proxy {redact(proxy)} is not supported: use an http:// proxy URL",
                hint="set HTTPS_PROXY=http://host:port (the tunnel to the server is still TLS)",
            )
        auth = _basic(unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        return (parts.hostname, parts.port or 8080, auth)


def _host_header(host: str, port: int | None, scheme: str) -> str:
    name = f"[{host}]" if ":" in host else host  # an IPv6 address
    return name if port is None or port == (443 if scheme == "https" else 80) else f"{name}:{port}"


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def _authority(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return (parts.scheme.lower(), parts.hostname, parts.port)


def _basic(login: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def _proxies_from_env() -> dict[str, str]:
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return {}  # the usual case, without importing urllib.request (15 ms)
    import urllib.request

    return {k: v for k, v in urllib.request.getproxies_environment().items()}


class _NoCertError(Exception):
    """Stands for ssl's certificate error while ssl is not imported: none can be raised then."""


def _cert_error() -> type[Exception]:
    """The class an ``except`` clause names, looked up only when an exception reaches it."""
    ssl = sys.modules.get("ssl")
    return ssl.SSLCertVerificationError if ssl is not None else _NoCertError


def _ssl_context() -> ssl.SSLContext:
    import ssl

    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    context = ssl.create_default_context()  # the system's, and SSL_CERT_FILE / SSL_CERT_DIR
    if not (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")):
        try:
            import certifi  # what requests trusts; the system store may be empty (slim images)

            context.load_verify_locations(certifi.where())
        except (ImportError, OSError):
            pass
    return context


def _load_netrc() -> object:
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        return False
    import netrc  # only when there is one: with shlex, ~3 ms of each worker process's start

    try:
        return netrc.netrc(path)
    except (netrc.NetrcParseError, OSError):
        return False  # as requests does: a broken netrc is ignored, not fatal


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    if isinstance(error, socket.timeout | TimeoutError):
        return "timed out (no data)"
    text = str(error) or type(error).__name__
    return text if len(text) < 300 else text[:300] + "…"


def describe(error: BaseException | None) -> str:
    """A short, credential-free description of a transport error."""
    return redact(_describe(error))
