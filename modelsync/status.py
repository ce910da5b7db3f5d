"""`modelsync status`: where each locked model stands on this machine (stat only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _runtime, lockfile, manifest
from .errors import ManifestError, UsageError
from .plan import observe, view_key
from .store import Store


def model_status(root: Path, store: Store | None = None) -> dict[str, Any]:
    lock = lockfile.read(root / _runtime.LOCK_NAME)
    if lock is None:
        raise UsageError(f"{root} has no models.lock", hint="run `modelsync lock`")
    store = store or Store()
    settings = manifest.load_settings(root / _runtime.MANIFEST_NAME)
    lock_stale = False
    if (root / _runtime.MANIFEST_NAME).exists():
        try:
            lock_stale = manifest.load(root / _runtime.MANIFEST_NAME).hash != lock.manifest_hash
        except ManifestError:
            lock_stale = True
    state = _runtime.read_state(root)
    try:
        current = state is not None and state.get("lock-sha256") == _runtime.lock_sha256(root)
    except OSError:
        current = False
    names = tuple(model.name for model in lock.models)
    observed = observe(lock, names, store, root / settings.dir, state if current else None)
    rows = []
    for model in lock.models:
        keys = [view_key(model.name, file.path) for file in model.files]
        in_view = sum(key in observed.view_ok for key in keys)
        cached = sum(file.blake3 in observed.blobs for file in model.files)
        if in_view == len(keys):
            status = "synced"
        elif in_view + cached == len(keys):
            status = "cached"
        elif in_view + cached:
            status = "partial"
        else:
            status = "missing"
        rows.append(
            {"name": model.name, "groups": list(model.groups), "files": len(model.files), "size": model.size, "status": status}
        )
    return {"project": str(root), "lock_stale": lock_stale, "cache": str(store.root), "models": rows}
