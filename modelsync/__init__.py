"""modelsync: model files for ML applications, declared, locked, verified.

Run time::

    import modelsync
    onnx_file = modelsync.path("vad")                  # the synced file
    folder = modelsync.path("minilm")                 # a multi-file model's folder
    config = modelsync.path("minilm", "config.json")  # one file of it

``import modelsync`` and ``path()`` use the standard library only; everything
else (the sync engine, the CLI) is imported when it is first used.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import (
    IntegrityError,
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
    "path",
    "sync",
]

TYPE_CHECKING = False  # not `from typing import ...`: typing costs start-up time
if TYPE_CHECKING:
    from typing import Any

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


def sync(
    project: str | os.PathLike[str] | None = None,
    *,
    groups: list[str] | None = None,
    progress: Any = None,
    jobs: int | None = None,
    offline: bool | None = None,
) -> "SyncReport":
    """Make the project's view match its lock, as ``modelsync sync --frozen`` does.

    ``progress(done_bytes, total_bytes)`` is called as bytes arrive (from worker
    threads). A file that cannot be synced raises its own error (``NetworkError``,
    ``IntegrityError``, …); several raise ``SyncFailed``, which lists them all.
    """
    from .syncer import SyncOptions, sync_project
    from ._runtime import MANIFEST_NAME, find_project

    root = find_project(project, markers=("models.lock", MANIFEST_NAME))
    return sync_project(root, SyncOptions(frozen=True, groups=tuple(groups or ()), jobs=jobs, offline=offline), progress=progress)
