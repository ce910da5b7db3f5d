"""Where model files come from, behind one small interface.

Each source kind is a module with three functions:

- ``resolve(spec, ctx) -> tuple[LockedFile, ...]`` — lock time: pin the files
  of a manifest entry. The bytes go into the store on the way, so the sync
  that follows has nothing to download.
- ``task_key(file) -> str`` — sync time: files with the same key are fetched
  by one task (one wheel download serves all its members).
- ``fetch(items, ctx)`` — sync time: put the blobs of ``items`` (files of one
  task) into the store, verified against their pins.

The engine and the locker only ever talk to this interface.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable

from ..store import Store

if TYPE_CHECKING:
    import requests

    from ..lockfile import LockedFile, LockedModel


@dataclass(frozen=True)
class FetchItem:
    """One locked file whose blob the store lacks."""

    model: str
    file: "LockedFile"


@dataclass
class Context:
    """What sources need from the outside, passed in rather than looked up."""

    store: Store
    project_root: Path  # the folder of models.toml / models.lock
    jobs: int = 8
    progress: Callable[[int], None] = lambda n: None  # bytes moved (negative: restarted)
    cancel: threading.Event = field(default_factory=threading.Event)  # set on Ctrl-C: stop soon
    _session: "requests.Session | None" = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check_cancelled(self) -> None:
        """Raise in a worker when the run was interrupted, so it stops between chunks."""
        if self.cancel.is_set():
            from ..errors import OperationalError

            raise OperationalError("interrupted")

    @property
    def session(self) -> "requests.Session":
        with self._lock:
            if self._session is None:
                from ..http import make_session

                self._session = make_session(pool_size=self.jobs)
            return self._session


def kind_of(model: "LockedModel", file: "LockedFile") -> str:
    """The source kind that fetches ``file``."""
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
    from . import local, pypi, url

    return {"url": url, "pypi": pypi, "path": local}[kind]
