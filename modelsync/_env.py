"""Every environment variable modelsync reads, in one place, read at call time.

Standard-library only: the run-time imports this module.
"""

from __future__ import annotations

import os

CACHE_DIR = "MODELSYNC_CACHE_DIR"
PROJECT = "MODELSYNC_PROJECT"
OFFLINE = "MODELSYNC_OFFLINE"
JOBS = "MODELSYNC_JOBS"
ENV = "MODELSYNC_ENV"
OVERRIDE_PREFIX = "MODELSYNC_OVERRIDE_"

# The transfer engine's knobs (docs/performance.md says when to touch them).
HTTP_RETRIES = "MODELSYNC_HTTP_RETRIES"  # tries per file
HTTP_BACKOFF = "MODELSYNC_HTTP_BACKOFF"  # seconds before the first retry
HTTP_RETRY_MAX_TIME = "MODELSYNC_HTTP_RETRY_MAX_TIME"  # seconds of failing before giving up a file
HTTP_TIMEOUT = "MODELSYNC_HTTP_TIMEOUT"  # seconds without a byte: a stall
SPLIT_SIZE = "MODELSYNC_SPLIT_SIZE"  # files this large are fetched as parallel Range parts
LOCK_TIMEOUT = "MODELSYNC_LOCK_TIMEOUT"  # seconds to wait for another process's download that makes no progress
PROCESSES = "MODELSYNC_PROCESSES"  # worker processes for many small files (the CLI on Linux); 1: threads only
PIPELINE = "MODELSYNC_PIPELINE"  # requests in flight on a connection for small files; 1: one at a time

# Hugging Face's own variables, honoured as huggingface_hub does (but read at call time).
HF_ENDPOINT = "HF_ENDPOINT"
HF_TOKEN = "HF_TOKEN"
HUGGING_FACE_HUB_TOKEN = "HUGGING_FACE_HUB_TOKEN"
HF_TOKEN_PATH = "HF_TOKEN_PATH"
HF_HUB_OFFLINE = "HF_HUB_OFFLINE"
HF_HUB_CACHE = "HF_HUB_CACHE"
HF_HOME = "HF_HOME"
XDG_CACHE_HOME = "XDG_CACHE_HOME"

_TRUE = {"1", "true", "yes", "on"}


def get(name: str) -> str | None:
    """The variable's value, or None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None


def flag(name: str) -> bool:
    """True when the variable is set to 1/true/yes/on (any case)."""
    return (get(name) or "").lower() in _TRUE


def integer(name: str, example: str = "8") -> int | None:
    """The variable as a positive integer; a bad value is a usage error."""
    value = get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        from .errors import UsageError

        raise UsageError(f"{name}={value!r} is not a positive integer", hint=f"unset {name} or set it to e.g. {example}")
    return number


def seconds(name: str, default: float, *, positive: bool = False) -> float:
    """The variable as a number of seconds (> 0 when ``positive``, else >= 0),
    else ``default``; a bad value is a usage error."""
    value = get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number == float("inf") or (positive and number == 0):
        from .errors import UsageError

        raise UsageError(f"{name}={value!r} is not a number of seconds", hint=f"unset {name} or set it to e.g. {default:g}")
    return number


DEFAULT_JOBS = 8


def jobs(explicit: int | None) -> int:
    """Connections at once: ``--jobs``, else MODELSYNC_JOBS, else 8."""
    count = explicit if explicit is not None else integer(JOBS)
    if count is not None and count < 1:
        from .errors import UsageError

        raise UsageError(f"--jobs must be at least 1, found {count}")
    return count or DEFAULT_JOBS


def check_transfer_settings() -> None:
    """Raise UsageError (exit 2) for a bad MODELSYNC_HTTP_* / SPLIT_SIZE /
    LOCK_TIMEOUT / PROCESSES / PIPELINE value: before any work, even when there is nothing to do."""
    integer(HTTP_RETRIES, example="5")
    seconds(HTTP_BACKOFF, 0)
    seconds(HTTP_RETRY_MAX_TIME, 0)
    seconds(HTTP_TIMEOUT, 1, positive=True)
    integer(SPLIT_SIZE, example="67108864")
    seconds(LOCK_TIMEOUT, 0)
    integer(PROCESSES, example="3")
    integer(PIPELINE, example="16")
