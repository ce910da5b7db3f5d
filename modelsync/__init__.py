"""modelsync: model files for ML applications, declared, locked, verified.

Run time::

    import modelsync
    onnx_file = modelsync.path("vad")                  # the synced file
    folder = modelsync.path("minilm")                 # a multi-file model's folder
    config = modelsync.path("minilm", "config.json")  # one file of it
    onnx_file = modelsync.ensure("vad", progress=cb)   # downloaded on first use
    session = modelsync.load("vad")                     # an onnxruntime.InferenceSession

``import modelsync`` and ``path()`` use the standard library only; everything
else (the sync engine, the CLI) is imported when it is first used.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import (
    IntegrityError,
    Interrupted,
    LockfileError,
    ManifestError,
    ModelNotFoundError,
    ModelsyncError,
    NetworkError,
    NotSyncedError,
    OfflineError,
    OperationalError,
    ProjectNotFoundError,
    StaleLockError,
    SyncFailed,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "IntegrityError",
    "Interrupted",
    "LockfileError",
    "ManifestError",
    "ModelNotFoundError",
    "ModelsyncError",
    "NetworkError",
    "NotSyncedError",
    "OfflineError",
    "OperationalError",
    "ProjectNotFoundError",
    "StaleLockError",
    "SyncFailed",
    "UsageError",
    "__version__",
    "ensure",
    "load",
    "path",
    "sync",
]

TYPE_CHECKING = False  # not `from typing import ...`: typing costs start-up time
if TYPE_CHECKING:
    import threading
    from typing import Any, Callable

    from .syncer import SyncReport


def path(name: str, file: str | None = None, project: str | os.PathLike[str] | None = None) -> Path:
    """The local path of a synced model: its file for a one-file model, else its folder.

    ``file`` picks one file (or sub-folder) of a multi-file model. The project
    is ``project``, else ``MODELSYNC_PROJECT``, else the nearest folder above
    the working directory that holds models.lock. Never touches the network.

    Raises ``NotSyncedError`` (a ``FileNotFoundError``) with the command that
    fixes it when the model is not in the view, and ``ModelNotFoundError`` (a
    ``KeyError``) for a name models.lock does not declare.

    >>> modelsync.path("vad")  # doctest: +SKIP
    PosixPath('/home/me/app/models/vad/silero_vad.onnx')
    """
    from . import _runtime

    return _runtime.path(name, file, project)


def ensure(
    name: str,
    file: str | None = None,
    *,
    project: str | os.PathLike[str] | None = None,
    progress: "Callable[[int, int], None] | None" = None,
    cancel: "threading.Event | None" = None,
) -> Path:
    """Like ``path()``, but a model that is not synced yet is downloaded first.

    The download is the sync engine's, for this one model and the variant this
    machine gets: verified, resumable, the other models left as they are.
    Thread-safe: many threads asking for the same model cause one download.
    ``progress(done_bytes, total_bytes)`` is called from worker threads as
    bytes arrive; setting ``cancel`` (a ``threading.Event``) stops the download
    soon with ``Interrupted``, and a later call resumes it.

    With ``MODELSYNC_OFFLINE=1`` nothing is downloaded: a model whose files are
    not on this machine raises ``OfflineError`` listing them with their sizes.
    In a frozen app (PyInstaller), the bundle is looked in first, then a
    ``models/`` folder beside the executable, then the user's cache; downloads
    go to the first of those two that is writable.
    """
    from . import _ensure

    return _ensure.ensure(name, file, project, progress, cancel)


def load(
    name: str,
    *,
    file: str | None = None,
    project: str | os.PathLike[str] | None = None,
    device: str = "auto",
    loader: str | None = None,
    **options: "Any",
) -> "Any":
    """A model opened by its loader, downloaded on first use (``ensure()``).

    ``loader = "onnx"``: an ``onnxruntime.InferenceSession`` with the execution
    providers this machine and the installed onnxruntime support (``device``
    or ``providers=`` override them); ``"torch"``: safetensors, TorchScript, or
    a ``.pt``/``.pth`` loaded with ``weights_only=True`` (a pickle that would
    run code is refused); ``"file"``: the path. Loaded objects are shared per
    process while something holds them. See docs/loaders.md.
    """
    from .loaders import load as _load

    return _load(name, file=file, project=project, device=device, loader=loader, **options)


def sync(
    project: str | os.PathLike[str] | None = None,
    *,
    groups: list[str] | None = None,
    progress: "Callable[[int, int], None] | None" = None,
    cancel: "threading.Event | None" = None,
    jobs: int | None = None,
    offline: bool | None = None,
) -> "SyncReport":
    """Make the project's view match its lock, as ``modelsync sync --frozen`` does.

    ``progress(done_bytes, total_bytes)`` is called as bytes arrive (from worker
    threads); ``cancel`` stops it as in ``ensure()``. A file that cannot be
    synced raises its own error (``NetworkError``, ``IntegrityError``, …);
    several raise ``SyncFailed``, which lists them all.
    """
    from ._runtime import MANIFEST_NAME, find_project
    from .syncer import SyncOptions, sync_project

    root = find_project(project, markers=("models.lock", MANIFEST_NAME))
    options = SyncOptions(frozen=True, groups=tuple(groups or ()), jobs=jobs, offline=offline)
    return sync_project(root, options, progress=progress, cancel=cancel)
