"""manifest + previous lock -> new lock.

The unit of resolution is a model, or one variant of a model. A unit keeps
its pins while its request (the source keys as written in models.toml, a
variant's over its model's) is unchanged, as Cargo and uv keep a locked
version while it still satisfies the requirement; only new or changed units
are resolved, which downloads them into the store. ``--upgrade`` re-resolves
on purpose.

The lock is universal: every variant is pinned whatever machine runs `lock`,
and each model records which variant every declared environment gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import sources
from .engine import as_modelsync_error, run_parallel
from .errors import ManyErrors, ModelsyncError, StaleLockError, UsageError
from .lockfile import Lock, LockedFile, LockedModel, LockedVariant, dumps
from .manifest import Manifest, ManifestModel, ModelSpec

Unit = tuple[str, str | None]  # (model, variant)


@dataclass(frozen=True)
class LockOutcome:
    lock: Lock
    resolved: tuple[str, ...]  # models with a unit pinned anew (fetched)
    kept: tuple[str, ...]  # models whose pins all carried over
    removed: tuple[str, ...]  # in the old lock, gone from the manifest


@dataclass(frozen=True)
class _Pinned:
    files: tuple[LockedFile, ...]
    pins: dict[str, Any]


def _old_pins(old: LockedModel | None, spec: ModelSpec) -> _Pinned | None:
    """What the old lock pinned for this unit, if it answered the same request."""
    if old is None or (old.variant(spec.variant) is None) != (spec.variant is None):
        return None
    effective = old.source_of(spec.variant)
    if sources.request_of(effective) != spec.request:
        return None
    pins = {key: value for key, value in effective.items() if key in sources.PIN_KEYS}
    return _Pinned(old.files_of(spec.variant), pins)


def reusable(spec: ModelSpec, old: LockedModel | None, root: Path) -> bool:
    """Can the old lock's pins stand for ``spec``? (no network; local files are re-hashed)"""
    pinned = _old_pins(old, spec)
    if pinned is None or not pinned.files:
        return False
    if spec.kind == "path":
        from .sources import local

        return local.unchanged(spec, pinned.files, root)
    return True


def pending(manifest: Manifest, old: Lock | None, upgrade: bool | frozenset[str] = False) -> list[ModelSpec]:
    """The units (models or variants) that need resolving for a fresh lock."""
    todo = []
    for spec in manifest.specs:
        wants_upgrade = upgrade is True or (isinstance(upgrade, frozenset) and spec.name in upgrade)
        previous = old.model(spec.name) if old else None
        if wants_upgrade or not reusable(spec, previous, manifest.root):
            todo.append(spec)
    return todo


def is_fresh(manifest: Manifest, old: Lock | None, old_text: str | None) -> tuple[bool, list[str]]:
    """Whether the lock on disk is what `modelsync lock` would write, and the models that differ."""
    if old is None or old_text is None:
        return False, [model.name for model in manifest.models]
    stale = sorted({spec.name for spec in pending(manifest, old)})
    stale += sorted({model.name for model in old.models} - {model.name for model in manifest.models})
    if stale:
        return False, stale
    rebuilt = _assemble(manifest, old, {})
    return dumps(rebuilt) == old_text, []


def environments_of(model: ManifestModel, environments: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Which variant each declared environment gets; an environment that matches none is bad input."""
    if not model.has_variants:
        return {}
    from . import markers

    chosen: dict[str, str] = {}
    for env_name, facts in environments.items():
        for spec in model.specs:
            if spec.when is None or markers.parse(spec.when).evaluate(facts):
                chosen[env_name] = spec.variant  # type: ignore[assignment]
                break
        else:
            raise UsageError(
                f"environment {env_name!r} matches no variant of model {model.name!r}, and the model has no fallback",
                hint=f"add a last [[models.{model.name}.variant]] without `when`, or widen a `when`, or fix [environments].{env_name}",
            )
    return chosen


def _assemble(manifest: Manifest, old: Lock | None, fresh: dict[Unit, _Pinned]) -> Lock:
    models = []
    for model in manifest.models:
        previous = old.model(model.name) if old else None
        files: list[LockedFile] = []
        variants: list[LockedVariant] = []
        model_pins: dict[str, Any] = {}
        for spec in model.specs:
            pinned = fresh.get((spec.name, spec.variant)) or _old_pins(previous, spec)
            assert pinned is not None, (spec.name, spec.variant)
            files += [file._replace(variant=spec.variant) for file in pinned.files]
            if spec.variant is None:
                model_pins = pinned.pins
            else:
                own = {key: value for key, value in spec.request.items() if model.base.get(key, _MISSING) != value}
                variants.append(LockedVariant(spec.variant, spec.when, {**own, **pinned.pins}))
        first = model.specs[0]
        models.append(
            LockedModel(
                name=model.name,
                source={**model.base, **model_pins},
                files=tuple(files),
                description=first.description,
                groups=first.groups,
                optional=first.optional,
                loader=first.loader,
                license=first.license,
                variants=tuple(variants),
                environments=environments_of(model, manifest.environments),
            )
        )
    return Lock(manifest_hash=manifest.hash, models=tuple(models))


_MISSING = object()


def lock(
    manifest: Manifest,
    old: Lock | None,
    ctx: sources.Context,
    *,
    upgrade: bool | frozenset[str] = False,
    offline: bool = False,
) -> LockOutcome:
    """Resolve what changed and return the new lock (nothing is written here)."""
    for model in manifest.models:  # bad [environments] fail before any download
        environments_of(model, manifest.environments)
    todo = pending(manifest, old, upgrade)
    if offline and any(spec.kind != "path" for spec in todo):
        names = ", ".join(sorted({spec.name for spec in todo if spec.kind != "path"}))
        raise StaleLockError(
            f"models.lock needs resolving for: {names}, which needs the network",
            hint="run `modelsync lock` with the network on, or sync with --frozen to use the lock as it is",
        )
    fresh: dict[Unit, _Pinned] = {}
    errors: list[ModelsyncError] = []

    def resolve(spec: ModelSpec) -> None:
        try:
            resolution = sources.module(spec.kind).resolve(spec, ctx)
        except Exception as error:
            errors.append(as_modelsync_error(error))
        else:
            fresh[(spec.name, spec.variant)] = _Pinned(resolution.files, resolution.pins)

    run_parallel([lambda spec=spec: resolve(spec) for spec in todo], ctx)
    # On any error the lock is not written: nothing is half-updated.
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ManyErrors(errors)
    new = _assemble(manifest, old, fresh)
    names_now = {model.name for model in manifest.models}
    resolved = {name for name, _ in fresh}
    return LockOutcome(
        lock=new,
        resolved=tuple(sorted(resolved)),
        kept=tuple(sorted(names_now - resolved)),
        removed=tuple(sorted({m.name for m in old.models} - names_now)) if old else (),
    )
