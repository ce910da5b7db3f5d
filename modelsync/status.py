"""`modelsync status`: where each locked model stands on this machine (stat only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _runtime, lockfile, manifest, settings as manifest_settings
from .errors import ManifestError, UsageError
from .plan import observe, view_key
from .store import Store
from .syncer import choose_variants


def model_status(root: Path, store: Store | None = None, environment: str | None = None) -> dict[str, Any]:
    lock = lockfile.read(root / _runtime.LOCK_NAME)
    if lock is None:
        raise UsageError(f"{root} has no models.lock", hint="run `modelsync lock`")
    store = store or Store()
    settings = manifest_settings.load(root / _runtime.MANIFEST_NAME)
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
    chosen, _, _ = choose_variants(lock, names, environment, strict=False)
    variants = {name: selection.variant for name, selection in chosen.items()}
    observed = observe(lock, variants, store, root / settings.dir, state if current else None)
    rows = []
    for model in lock.models:
        if model.name not in chosen:  # an optional model no variant of which fits
            rows.append({"name": model.name, "variant": None, "groups": list(model.groups), "files": 0, "size": 0, "status": "no variant"})
            continue
        files = model.files_of(variants[model.name])
        keys = [view_key(model.name, file.path) for file in files]
        in_view = sum(key in observed.view_ok for key in keys)
        cached = sum(file.blake3 in observed.blobs for file in files)
        if in_view == len(keys):
            status = "synced"
        elif in_view + cached == len(keys):
            status = "cached"
        elif in_view + cached:
            status = "partial"
        else:
            status = "missing"
        rows.append(
            {
                "name": model.name,
                "variant": variants[model.name],
                "groups": list(model.groups),
                "files": len(files),
                "size": sum(file.size for file in files),
                "status": status,
            }
        )
    return {"project": str(root), "lock_stale": lock_stale, "cache": str(store.root), "models": rows}
