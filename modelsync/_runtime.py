"""What a running application needs: find the project, read the state, give paths.

Standard library only, and no TOML: ``modelsync sync`` leaves a small JSON
state file (``.modelsync/state.json``) that says what is in the view, so the
run-time never parses models.lock nor probes hardware. It hashes the lock's
bytes to notice a lock that changed since the last sync.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import _env
from .errors import ModelNotFoundError, NotSyncedError, ProjectNotFoundError, UsageError

MANIFEST_NAME = "models.toml"
LOCK_NAME = "models.lock"
STATE_DIR = ".modelsync"
STATE_FILE = "state.json"
STATE_VERSION = 1

TYPE_CHECKING = False  # not `from typing import ...`: typing costs start-up time
if TYPE_CHECKING:
    from typing import Any

# (project root) -> ((lock stat, state stat), state): path() in a loop reads nothing twice.
_cache: dict[Path, tuple[tuple, dict[str, Any]]] = {}


class UnknownFileError(UsageError, FileNotFoundError):
    """A file name that the model does not have."""

    def __str__(self) -> str:
        return UsageError.__str__(self)


def find_project(project: str | os.PathLike[str] | None = None, markers: tuple[str, ...] = (LOCK_NAME,)) -> Path:
    """The project folder: the argument, else MODELSYNC_PROJECT, else the nearest
    folder above the working directory that holds one of ``markers``."""
    explicit = project if project is not None else _env.get(_env.PROJECT)
    if explicit is not None:
        root = Path(explicit).expanduser().absolute()
        if root.is_file():  # a path to models.toml / models.lock also names its project
            root = root.parent
        if not any((root / marker).is_file() for marker in markers):
            raise ProjectNotFoundError(
                f"{root} holds no {' or '.join(markers)}",
                hint="point project= / MODELSYNC_PROJECT / --project at the folder of models.toml",
            )
        return root
    start = Path.cwd()
    for folder in (start, *start.parents):
        if any((folder / marker).is_file() for marker in markers):
            return folder
    raise ProjectNotFoundError(
        f"no {' or '.join(markers)} in {start} or any folder above it",
        hint="run from your project's folder, or set MODELSYNC_PROJECT; create a project with `modelsync init`",
    )


def state_path(root: Path) -> Path:
    return root / STATE_DIR / STATE_FILE


def lock_sha256(root: Path) -> str:
    return hashlib.sha256((root / LOCK_NAME).read_bytes()).hexdigest()


def _signature(path: Path) -> tuple:
    try:
        info = path.stat()
    except OSError:
        return ()
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def read_state(root: Path) -> dict[str, Any] | None:
    """The state of the last sync, or None when there was none (or it is unreadable)."""
    try:
        with open(state_path(root), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return None
    return state


def current_state(root: Path) -> dict[str, Any]:
    """The state, checked against the lock it was made from."""
    key = (_signature(root / LOCK_NAME), _signature(state_path(root)))
    cached = _cache.get(root)
    if cached is not None and cached[0] == key:
        return cached[1]
    sync_hint = f"run `modelsync sync` in {root}"
    state = read_state(root)
    if state is None:
        raise NotSyncedError(f"the models of {root} are not synced yet", hint=sync_hint)
    try:
        digest = lock_sha256(root)
    except OSError:
        raise ProjectNotFoundError(f"{root / LOCK_NAME} cannot be read", hint="run `modelsync lock`") from None
    if state.get("lock-sha256") != digest:
        raise NotSyncedError("models.lock changed since the last sync", hint=sync_hint)
    _cache[root] = (key, state)
    return state


def path(name: str, file: str | None = None, project: str | os.PathLike[str] | None = None) -> Path:
    root = find_project(project)
    state = current_state(root)
    models = state.get("models", {})
    entry = models.get(name)
    if entry is None:
        if name not in state.get("lock-models", []):
            raise ModelNotFoundError(name, list(state.get("lock-models", [])))
        raise NotSyncedError(
            f"model {name!r} is declared but not synced",
            hint=f"run `modelsync sync` in {root} (it may be in a group, or optional and failed to fetch)",
        )
    folder = root / state["view"] / name
    files = entry.get("files", {})
    if file is not None:
        relative = str(file).replace("\\", "/").strip("/")
        if relative not in files and not any(f.startswith(relative + "/") for f in files):
            import difflib

            close = difflib.get_close_matches(relative, list(files), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "its files: " + ", ".join(sorted(files)[:10])
            raise UnknownFileError(f"model {name!r} has no file {relative!r}", hint=hint)
        target = folder / relative
    elif entry.get("single"):
        target = folder / next(iter(files))
    else:
        target = folder
    if not os.path.exists(target):
        raise NotSyncedError(f"{target} is missing from the view", hint=f"run `modelsync sync` in {root} to restore it")
    return target
