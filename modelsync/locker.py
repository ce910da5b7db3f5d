"""manifest + previous lock -> new lock.

A model keeps its pins while its request (the source keys as written in
models.toml) is unchanged, as Cargo and uv keep a locked version while it
still satisfies the requirement; only new or changed models are resolved,
which downloads them into the store. ``--upgrade`` re-resolves on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import sources
from .engine import as_modelsync_error, run_parallel
from .errors import ManyErrors, ModelsyncError, StaleLockError
from .lockfile import Lock, LockedModel, dumps
from .manifest import Manifest, ModelSpec


@dataclass(frozen=True)
class LockOutcome:
    lock: Lock
    resolved: tuple[str, ...]  # pinned anew (fetched)
    kept: tuple[str, ...]  # pins carried over
    removed: tuple[str, ...]  # in the old lock, gone from the manifest


def _with_metadata(locked: LockedModel, spec: ModelSpec) -> LockedModel:
    pins = {key: value for key, value in locked.source.items() if key in sources.PIN_KEYS}
    return replace(
        locked,
        source={**spec.request, **pins},
        description=spec.description,
        groups=spec.groups,
        optional=spec.optional,
        loader=spec.loader,
        license=spec.license,
    )


def reusable(spec: ModelSpec, old: LockedModel | None, root: Path) -> bool:
    """Can ``old``'s pins stand for ``spec``? (no network; local files are re-hashed)"""
    if old is None or sources.request_of(old.source) != spec.request:
        return False
    if spec.kind == "path":
        from .sources import local

        return local.unchanged(spec, old, root)
    return True


def pending(manifest: Manifest, old: Lock | None, upgrade: bool | frozenset[str] = False) -> list[ModelSpec]:
    """The models that need resolving (network or copying) for a fresh lock."""
    todo = []
    for spec in manifest.models:
        wants_upgrade = upgrade is True or (isinstance(upgrade, frozenset) and spec.name in upgrade)
        previous = old.model(spec.name) if old else None
        if wants_upgrade or not reusable(spec, previous, manifest.root):
            todo.append(spec)
    return todo


def is_fresh(manifest: Manifest, old: Lock | None, old_text: str | None) -> tuple[bool, list[str]]:
    """Whether the lock on disk is what `modelsync lock` would write, and the models that differ."""
    if old is None or old_text is None:
        return False, [spec.name for spec in manifest.models]
    stale = [spec.name for spec in pending(manifest, old)]
    stale += sorted({model.name for model in old.models} - {spec.name for spec in manifest.models})
    if stale:
        return False, stale
    rebuilt = _assemble(manifest, old, {})
    return dumps(rebuilt) == old_text, []


def _assemble(manifest: Manifest, old: Lock | None, fresh: dict[str, LockedModel]) -> Lock:
    models = []
    for spec in manifest.models:
        locked = fresh.get(spec.name) or (old.model(spec.name) if old else None)
        assert locked is not None
        models.append(_with_metadata(locked, spec))
    return Lock(manifest_hash=manifest.hash, models=tuple(models))


def lock(
    manifest: Manifest,
    old: Lock | None,
    ctx: sources.Context,
    *,
    upgrade: bool | frozenset[str] = False,
    offline: bool = False,
) -> LockOutcome:
    """Resolve what changed and return the new lock (nothing is written here)."""
    todo = pending(manifest, old, upgrade)
    if offline and any(spec.kind != "path" for spec in todo):
        names = ", ".join(spec.name for spec in todo if spec.kind != "path")
        raise StaleLockError(
            f"models.lock needs resolving for: {names}, which needs the network",
            hint="run `modelsync lock` with the network on, or sync with --frozen to use the lock as it is",
        )
    fresh: dict[str, LockedModel] = {}
    errors: list[ModelsyncError] = []

    def resolve(spec: ModelSpec) -> None:
        try:
            resolution = sources.module(spec.kind).resolve(spec, ctx)
        except Exception as error:
            errors.append(as_modelsync_error(error))
        else:
            source = {**spec.request, **resolution.pins}
            fresh[spec.name] = LockedModel(name=spec.name, source=source, files=resolution.files)

    run_parallel([lambda spec=spec: resolve(spec) for spec in todo], ctx)
    # On any error the lock is not written: nothing is half-updated.
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ManyErrors(errors)
    new = _assemble(manifest, old, fresh)
    names_now = {spec.name for spec in manifest.models}
    return LockOutcome(
        lock=new,
        resolved=tuple(sorted(fresh)),
        kept=tuple(sorted(names_now - set(fresh))),
        removed=tuple(sorted({m.name for m in old.models} - names_now)) if old else (),
    )
