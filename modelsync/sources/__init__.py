"""Where model files come from, behind one small interface.

Each source kind is a module with three functions:

- ``resolve(spec, ctx) -> Resolution`` — lock time: pin the files of a
  manifest entry (and model-level pins such as a Hugging Face commit). The
  bytes go into the store on the way, so the sync that follows has nothing to
  download.
- ``task_key(file) -> str`` — sync time: files with the same key are fetched
  by one task (one wheel download serves all its members).
- ``fetch(items, ctx)`` — sync time: put the blobs of ``items`` (files of one
  task) into the store, verified against their pins.

The engine and the locker only ever talk to this interface.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping, NamedTuple

from .._records import EMPTY
from ..errors import IntegrityError
from ..store import Digests, Expected, Store

_COPY_CHUNK = 1 << 20

if TYPE_CHECKING:
    from ..http import Client
    from ..lockfile import LockedFile, LockedModel


# Keys a resolver adds to a model's lock `source` next to the request as
# written (the request decides whether a pin is kept; these are the pins).
PIN_KEYS = frozenset({"commit"})


class Resolution(NamedTuple):
    """What lock-time resolution pinned for one model."""

    files: tuple[LockedFile, ...]
    pins: Mapping[str, Any] = EMPTY  # e.g. {"commit": "<40 hex>"}


def request_of(source: dict[str, Any]) -> dict[str, Any]:
    """A lock `source` without its pins: the request it was resolved from."""
    return {key: value for key, value in source.items() if key not in PIN_KEYS}


class FetchItem(NamedTuple):
    """One locked file whose blob the store lacks."""

    model: str
    file: LockedFile
    origin: Mapping[str, Any] = EMPTY  # the lock `source` of its model (variant)


def _no_progress(nbytes: int) -> None:
    pass


class Slots:
    """A budget of ``size`` concurrent transfers, used as ``with slots:``.

    Tokens in a ``queue.SimpleQueue`` (C code) rather than a
    ``threading.Semaphore``, whose Python-level condition eight workers
    contended for twice per file."""

    def __init__(self, size: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(size):
            self._tokens.put(None)

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *exc_info: object) -> None:
        self._tokens.put(None)


class Context:
    """What sources need from the outside, passed in rather than looked up."""

    def __init__(self, store: Store, project_root: Path, jobs: int = 8, offline: bool = False) -> None:
        self.store = store
        self.project_root = project_root  # the folder of models.toml / models.lock
        self.jobs = jobs
        self.offline = offline  # no network: sources may only copy what is already on this machine
        self.progress: Callable[[int], None] = _no_progress  # bytes moved (negative: restarted)
        self.cancel = threading.Event()  # set on Ctrl-C: stop soon
        self._slots: Slots | None = None
        self._client: Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Context(store={self.store.root}, project_root={self.project_root}, jobs={self.jobs}, offline={self.offline})"

    @property
    def slots(self) -> "Slots":
        """At most ``jobs`` transfers at once, however pools nest (hf files inside a model's resolution)."""
        slots = self._slots  # set once: read without the lock, which every worker would contend for per file
        if slots is None:
            with self._lock:
                if self._slots is None:
                    self._slots = Slots(self.jobs)
                slots = self._slots
        return slots

    def after_fork(self, jobs: int) -> None:
        """In a forked worker process: its own share of the connections, and none
        of the parent's connections, slots or locks (another thread may have held them)."""
        self.jobs = jobs
        self._slots = None
        self._client = None
        self._lock = threading.Lock()
        self.cancel = threading.Event()

    def interrupt(self) -> None:
        """Ctrl-C: workers stop at their next chunk, and reads blocked on the network return now."""
        self.cancel.set()
        with self._lock:
            client = self._client
        if client is not None:
            client.abort()

    def check_cancelled(self) -> None:
        """Raise in a worker when the run was interrupted, so it stops between chunks."""
        if self.cancel.is_set():
            from ..errors import Interrupted

            raise Interrupted("interrupted", hint="run it again: what was downloaded is kept and resumes")

    def store_stream(self, stream: BinaryIO, expected: Expected, *, want_sha256: bool = False) -> Digests:
        """Copy a local stream (a file, a wheel member) into the store, verified.

        Progress is reported as it goes and taken back if the bytes do not verify."""
        with self.store.writer(expected, want_sha256=want_sha256) as writer:
            try:
                while block := stream.read(_COPY_CHUNK):
                    self.check_cancelled()
                    writer.write(block)
                    self.progress(len(block))
                return writer.commit()
            except IntegrityError:
                self.progress(-writer.size)
                raise

    @property
    def client(self) -> "Client":
        """The HTTP client every download of this run shares (its connection pool)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    from ..http import Client

                    self._client = Client(pool_size=self.jobs)
                client = self._client
        return client


def match_globs(paths: list[str], patterns: tuple[str, ...], *, model: str, inside: str, hint: str) -> list[str]:
    """The paths any pattern matches (fnmatch: `*` also crosses '/'), each once, in
    first-match order; a pattern that matches nothing is bad input, named with its model."""
    import fnmatch

    from ..errors import UsageError

    chosen: list[str] = []
    for pattern in patterns:
        matched = [path for path in paths if fnmatch.fnmatchcase(path, pattern)]
        if not matched:
            raise UsageError(f"models.{model}.files: {pattern!r} matches no file in {inside}", hint=hint)
        chosen += [path for path in matched if path not in chosen]
    return chosen


def kind_of(model: "LockedModel", file: "LockedFile") -> str:
    """The source kind that fetches ``file``."""
    if "hf" in model.source_of(file.variant):
        return "hf"
    if file.url is not None:
        return "url"
    source = file.source or {}
    if "wheel" in source:
        return "pypi"
    if "path" in source:
        return "path"
    from ..errors import LockfileError

    raise LockfileError(
        f"file {file.path!r} has no url and no source", file="models.lock", key=f"model[{model.name}]", hint="regenerate it with `modelsync lock`"
    )


def module(kind: str) -> ModuleType:
    """The module of a source kind, imported when first needed (pypi's pulls in zipfile
    and subprocess). Plain import statements, so that PyInstaller sees all four."""
    if kind == "url":
        from . import url as found
    elif kind == "hf":
        from . import hf as found
    elif kind == "pypi":
        from . import pypi as found
    elif kind == "path":
        from . import local as found
    else:
        raise KeyError(kind)
    return found
