"""``modelsync.ensure()``: a model's path, downloaded on first use.

The fast case is ``path()``: already synced, standard library only. The rest
runs the sync engine for that one model (its variant for this machine),
additively: the other models of the view stay as they are.

One download per model however many threads ask: they queue on a lock per
(place, model) and find the path ready when their turn comes. Between
processes the engine's per-blob locks do the same for the bytes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from . import _env, _runtime
from .errors import NotSyncedError, OperationalError

_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(place: _runtime.Place, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((str(place.root), name), threading.Lock())


def _writable(place: _runtime.Place) -> bool:
    """Can the view and state be written there? (made if missing, as a sync would)"""
    try:
        (place.root / _runtime.STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only, no permission, or in the way: try the next place
        return False
    return os.access(place.root / _runtime.STATE_DIR, os.W_OK)


def ensure(
    name: str,
    file: str | None,
    project: str | os.PathLike[str] | None,
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> Path:
    try:
        return _runtime.path(name, file, project)
    except NotSyncedError:
        pass
    candidates = _runtime.places(project)
    place = next((candidate for candidate in candidates if _writable(candidate)), None)
    if place is None:
        raise OperationalError(
            f"nowhere to download model {name!r}: none of {', '.join(str(c.root) for c in candidates)} is writable",
            hint="run the app from a writable folder, or set MODELSYNC_PROJECT to a project that holds its models",
        )
    with _lock_for(place, name):
        try:
            return _runtime.path(name, file, project)  # another thread finished it while we waited
        except NotSyncedError:
            pass
        from .syncer import SyncOptions, sync_project

        options = SyncOptions(
            frozen=True,
            models=(name,),
            lock_file=place.lock if place.external_lock else None,
            # Offline, the cache may still hold the bytes; anything it lacks is listed in the error.
            offline=_env.flag(_env.OFFLINE),
        )
        sync_project(place.root, options, progress=progress, cancel=cancel)
    return _runtime.path(name, file, project)
