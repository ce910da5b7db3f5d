"""HTTP downloads into the store: streamed, hashed on the way, retried, resumed.

Built on a ``requests.Session`` so that what users rely on keeps working:
proxies from the environment, ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``,
credentials from ``~/.netrc``. One session is shared by all worker threads,
with a connection pool as large as the number of jobs, so connections to a
host are reused.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .errors import IntegrityError, Mismatch, NetworkError, SourceError
from .store import BlobWriter

CHUNK = 1 << 20
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_backoff: float = 20.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # a stall: no byte for this long


def make_session(pool_size: int = 8) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"modelsync/{__version__}"
    # Ask for the bytes as stored: the hashes pin the file, not an encoding of it.
    session.headers["Accept-Encoding"] = "identity"
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # a malformed header: fall back to our own backoff
    return max(0.0, parsed.timestamp() - time.time())


def _sleep_before_retry(policy: RetryPolicy, attempt: int, retry_after: float | None) -> None:
    delay = min(policy.max_backoff, policy.backoff * (2**attempt))
    delay = delay * (0.5 + random.random() / 2)  # jitter: many clients must not retry in step
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_backoff * 3))
    time.sleep(delay)


def download(
    session: requests.Session,
    url: str,
    writer: BlobWriter,
    *,
    progress: Callable[[int], None] = lambda n: None,
    headers: dict[str, str] | None = None,
    policy: RetryPolicy = RetryPolicy(),
    check_cancelled: Callable[[], None] = lambda: None,
    auth_hint: str = "the server wants credentials: put them in ~/.netrc (they never enter models.lock)",
) -> None:
    """Stream ``url`` into ``writer``; retry transient failures, resuming by Range.

    ``check_cancelled`` is called between chunks and raises to stop early;
    ``auth_hint`` is what a 401/403 error tells the user to do."""
    last_error: Exception | None = None
    for attempt in range(policy.attempts):
        if attempt:
            _sleep_before_retry(policy, attempt - 1, getattr(last_error, "retry_after", None))
        request_headers = dict(headers or {})
        if writer.size:
            request_headers["Range"] = f"bytes={writer.size}-"
        try:
            _fetch_once(session, url, writer, request_headers, progress, policy, check_cancelled, auth_hint)
            return
        except _Retryable as error:
            last_error = error
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as error:
            last_error = error
        except requests.RequestException as error:  # redirect loops, invalid URLs: retrying won't help
            raise NetworkError(f"download of {redact(url)} failed: {redact(_describe(error))}", hint="check the URL in models.toml") from None
    raise NetworkError(
        f"download of {redact(url)} failed after {policy.attempts} attempts: {redact(_describe(last_error))}",
        hint="check the network (and proxy settings), then run the command again; finished files are kept",
    )


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _describe(error: Exception | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error) or type(error).__name__
    return text if len(text) < 300 else text[:300] + "…"


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def redact(text: str) -> str:
    """Hide credentials written into URLs (``https://user:secret@host``) in a message."""
    return re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", r"\1***@", text)


def _server_says(response: requests.Response) -> str:
    """The server's own explanation, where it gives one (the Hugging Face Hub does)."""
    message = response.headers.get("X-Error-Message", "").strip()
    return f": {message[:300]}" if message else ""


def _starts_at(response: requests.Response, offset: int) -> bool:
    """Does a 206 answer start where we asked? (Content-Range: bytes START-END/TOTAL)"""
    value = response.headers.get("Content-Range", "")
    unit, _, spec = value.partition(" ")
    start = spec.split("-", 1)[0]
    return unit == "bytes" and start.isdigit() and int(start) == offset


def _fetch_once(
    session: requests.Session,
    url: str,
    writer: BlobWriter,
    headers: dict[str, str],
    progress: Callable[[int], None],
    policy: RetryPolicy,
    check_cancelled: Callable[[], None],
    auth_hint: str,
) -> None:
    with session.get(url, headers=headers, stream=True, timeout=(policy.connect_timeout, policy.read_timeout)) as response:
        status = response.status_code
        if _scheme(url) == "https":
            for hop in [*response.history, response]:
                if _scheme(hop.url) != "https":
                    raise SourceError(
                        f"{redact(url)} redirected to plain HTTP ({redact(hop.url)})",
                        hint="refusing a downgrade from HTTPS; ask the host to fix it",
                    )
        if status in RETRY_STATUS:
            raise _Retryable(f"HTTP {status} {response.reason}", _retry_after(response))
        if status in (401, 403):
            raise SourceError(f"HTTP {status} {response.reason} for {redact(url)}{_server_says(response)}", hint=auth_hint)
        if status == 416 and writer.size:
            # Our resume offset is past the end: start that file over.
            progress(-writer.size)
            writer.restart()
            raise _Retryable("HTTP 416 on resume")
        if status >= 400:
            raise SourceError(f"HTTP {status} {response.reason} for {redact(url)}{_server_says(response)}", hint="check the URL; if it moved, update models.toml and run `modelsync lock`")
        if "Range" in headers and status != 206:
            # The server ignored our Range request and sends the whole file:
            # start over rather than mix bytes.
            progress(-writer.size)
            writer.restart()
        elif "Range" in headers and not _starts_at(response, writer.size):
            progress(-writer.size)
            writer.restart()
            raise _Retryable("the server answered a different range than asked")
        expected = writer.expected.size
        length = response.headers.get("Content-Length")
        if expected is not None and length is not None and status == 200 and length.isdigit() and int(length) != expected:
            raise IntegrityError(Mismatch("size", f"{expected} bytes", f"{length} bytes (Content-Length)"))
        for chunk in response.iter_content(CHUNK):
            check_cancelled()
            if chunk:
                writer.write(chunk)
                progress(len(chunk))
        if expected is not None and writer.size < expected:
            raise _Retryable(f"connection closed after {writer.size} of {expected} bytes")
