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


def current_state(root: Path, lock: Path | None = None) -> dict[str, Any]:
    """The state, checked against the lock it was made from (``root``'s own, or ``lock``)."""
    lock = lock or root / LOCK_NAME
    key = (_signature(lock), _signature(state_path(root)))
    cached = _cache.get(root)
    if cached is not None and cached[0] == key:
        return cached[1]
    sync_hint = f"run `modelsync sync` in {root}"
    state = read_state(root)
    if state is None:
        raise NotSyncedError(f"the models of {root} are not synced yet", hint=sync_hint)
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    except OSError:
        raise ProjectNotFoundError(f"{lock} cannot be read", hint="run `modelsync lock`") from None
    if state.get("lock-sha256") != digest:
        raise NotSyncedError("models.lock changed since the last sync", hint=sync_hint)
    _cache[root] = (key, state)
    return state


# -- frozen applications (PyInstaller) -------------------------------------------
#
# A frozen app carries its lock (and maybe some models) in its bundle:
#   sys._MEIPASS/modelsync_bundle/models.lock
#   sys._MEIPASS/modelsync_bundle/bundle.json          what is bundled (variant, files, blake3)
#   sys._MEIPASS/modelsync_bundle/models/<model>/<path>
# Models it downloads go beside the executable (a portable `models/`), or into
# the user's cache when that folder is not writable. Each of those two places
# is laid out like a project: models/ and .modelsync/state.json.

BUNDLE_DIR = "modelsync_bundle"
BUNDLE_FILE = "bundle.json"


class Place:
    """One place a project's models can be: a folder with a view and a state,
    made from ``lock`` (the project's own, or a frozen app's bundled one)."""

    __slots__ = ("root", "lock", "external_lock")

    def __init__(self, root: Path, lock: Path | None = None) -> None:
        self.root = root
        self.lock = lock or root / LOCK_NAME
        self.external_lock = lock is not None


def frozen_bundle() -> Path | None:
    """The bundle folder of a frozen app that carries a models.lock; else None."""
    import sys

    if not getattr(sys, "frozen", False):
        return None
    base = getattr(sys, "_MEIPASS", None) or os.path.dirname(sys.executable)
    bundle = Path(base) / BUNDLE_DIR
    return bundle if (bundle / LOCK_NAME).is_file() else None


def user_cache_root() -> Path:
    """The platform's per-user cache folder, as platformdirs would say (stdlib only)."""
    import sys

    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def app_places(bundle: Path) -> list[Place]:
    """Where a frozen app keeps the models it downloads, in the order they are looked in."""
    import sys

    executable = Path(sys.executable).resolve()
    lock = bundle / LOCK_NAME
    return [Place(executable.parent, lock), Place(user_cache_root() / "modelsync" / "apps" / executable.stem, lock)]


def places(project: str | os.PathLike[str] | None = None) -> list[Place]:
    """Where to look for synced models: the project; or, in a frozen app (with no
    project named), beside the executable, then the user cache."""
    if project is None and _env.get(_env.PROJECT) is None:
        bundle = frozen_bundle()
        if bundle is not None:
            return app_places(bundle)
    return [Place(find_project(project))]


_bundles: dict[Path, dict[str, Any]] = {}


def bundled(bundle: Path) -> dict[str, Any]:
    """bundle.json of a frozen app: the models built into it ({} when none are)."""
    if bundle not in _bundles:
        try:
            with open(bundle / BUNDLE_FILE, encoding="utf-8") as handle:
                content = json.load(handle)
            lock_digest = hashlib.sha256((bundle / LOCK_NAME).read_bytes()).hexdigest()
        except (OSError, ValueError):
            content, lock_digest = {}, None
        fits = isinstance(content, dict) and content.get("lock-sha256") == lock_digest
        _bundles[bundle] = content.get("models", {}) if fits else {}
    return _bundles[bundle]


# -- path() ------------------------------------------------------------------------


def _pick(folder: Path, entry: dict[str, Any], name: str, file: str | None) -> Path:
    """The path of ``file`` (or of the model) inside its folder of a view or bundle."""
    files = entry.get("files", {})
    if file is not None:
        relative = str(file).replace("\\", "/").strip("/")
        if relative not in files and not any(f.startswith(relative + "/") for f in files):
            import difflib

            close = difflib.get_close_matches(relative, list(files), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "its files: " + ", ".join(sorted(files)[:10])
            raise UnknownFileError(f"model {name!r} has no file {relative!r}", hint=hint)
        return folder / relative
    if entry.get("single"):
        return folder / next(iter(files))
    return folder


def _in_place(place: Place, name: str, file: str | None) -> Path:
    state = current_state(place.root, place.lock)
    entry = state.get("models", {}).get(name)
    if entry is None:
        if name not in state.get("lock-models", []):
            raise ModelNotFoundError(name, list(state.get("lock-models", [])))
        raise NotSyncedError(
            f"model {name!r} is declared but not synced",
            hint=f"run `modelsync sync` in {place.root} (it may be in a group, or optional and failed to fetch)",
        )
    target = _pick(place.root / state["view"] / name, entry, name, file)
    if not os.path.exists(target):
        raise NotSyncedError(f"{target} is missing from the view", hint=f"run `modelsync sync` in {place.root} to restore it")
    return target


def entry(name: str, project: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What the run time knows of a model that ``path()`` finds: its variant, loader, files."""
    bundle = frozen_bundle() if project is None and _env.get(_env.PROJECT) is None else None
    if bundle is not None and name in bundled(bundle):
        return bundled(bundle)[name]
    for place in places(project):
        try:
            found = current_state(place.root, place.lock).get("models", {}).get(name)
        except NotSyncedError:
            continue
        if found is not None:
            return found
    raise NotSyncedError(f"model {name!r} is not synced", hint="call modelsync.ensure() or run `modelsync sync`")


def path(name: str, file: str | None = None, project: str | os.PathLike[str] | None = None) -> Path:
    bundle = frozen_bundle() if project is None and _env.get(_env.PROJECT) is None else None
    if bundle is not None:
        found = bundled(bundle).get(name)
        if found is not None:
            target = _pick(bundle / "models" / name, found, name, file)
            if os.path.exists(target):
                return target
    not_synced: NotSyncedError | None = None
    for place in places(project):
        try:
            return _in_place(place, name, file)
        except NotSyncedError as error:
            not_synced = not_synced or error
    if bundle is not None:
        raise NotSyncedError(
            f"model {name!r} is neither bundled with this app nor downloaded yet",
            hint=f"call modelsync.ensure({name!r}) to download it on first use, or bundle it with modelsync.pyinstaller.datas()",
        )
    assert not_synced is not None
    raise not_synced
