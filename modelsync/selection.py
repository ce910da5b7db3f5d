"""Which variant of each model this machine gets: a lookup in the lock, given facts.

Pure: the facts (from ``hardware.detect``, overrides or a named environment)
come in as arguments, so `sync`, `explain` and the tests share one rule —
the first variant whose `when` holds wins; a variant without `when` is the
fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from .errors import OperationalError, UsageError
from .lockfile import Lock, LockedModel


class NoVariantError(OperationalError):
    """No variant of a model fits this machine, and the model has no fallback."""


class Selection(NamedTuple):
    model: str
    variant: str | None  # None: the model has no variants
    reason: str  # why this variant, for `explain`, the state file and messages


def facts_needed(lock: Lock, models: tuple[str, ...] | None = None) -> frozenset[str]:
    """The facts that the markers of these models read (so costly probes run only when asked for)."""
    needed: set[str] = set()
    for model in lock.models:
        if models is None or model.name in models:
            for variant in model.variants:
                if variant.when is not None:
                    needed |= _markers().parse(variant.when).facts
    return frozenset(needed)


def choose(model: LockedModel, facts: Mapping[str, Any] | None, environment: str | None = None) -> Selection:
    if not model.variants:
        return Selection(model.name, None, "the model has no variants")
    if environment is not None:
        variant = model.environments.get(environment)
        if variant is None:
            declared = ", ".join(sorted(model.environments)) or "none"
            raise UsageError(
                f"environment {environment!r} is not declared for model {model.name!r} (declared: {declared})",
                hint="declare it in [environments] of models.toml and run `modelsync lock`, or drop --env / MODELSYNC_ENV",
            )
        return Selection(model.name, variant, f"environment {environment!r}")
    for variant in model.variants:
        if variant.when is None:
            return Selection(model.name, variant.name, "the fallback (no other variant's `when` holds)")
        if _markers().parse(variant.when).evaluate(facts or {}):
            return Selection(model.name, variant.name, f"`{variant.when}` holds")
    raise NoVariantError(
        f"no variant of model {model.name!r} fits this machine: "
        + "; ".join(f"{variant.name}: `{variant.when}` is false" for variant in model.variants),
        hint=f"see `modelsync explain {model.name}`; add a fallback variant, or pick one with --env / MODELSYNC_OVERRIDE_<FACT>",
    )


def select(lock: Lock, models: tuple[str, ...], facts: Mapping[str, Any] | None, environment: str | None = None) -> dict[str, Selection]:
    chosen = {}
    for name in models:
        model = lock.model(name)
        assert model is not None
        chosen[name] = choose(model, facts, environment)
    return chosen


def _markers():  # type: ignore[no-untyped-def]
    """The marker language, imported when a model has variants (7 ms a plain sync saves)."""
    from . import markers

    return markers
