"""`modelsync explain NAME`: each variant of a model, whether its `when` holds here, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _env, _runtime, lockfile, manifest, markers
from .errors import ModelNotFoundError, UsageError


def _variants(
    root: Path, name: str
) -> tuple[list[tuple[str, str | None]], dict[str, dict[str, Any]] | None, dict[str, str]]:
    """[(variant, when)], the declared environments' facts (models.toml only) and which
    variant each environment gets (models.lock only): from models.toml, else models.lock."""
    manifest_path = root / _runtime.MANIFEST_NAME
    if manifest_path.exists():
        spec = manifest.load(manifest_path)
        model = spec.model(name)
        if model is None:
            raise ModelNotFoundError(name, [m.name for m in spec.models], where="models.toml")
        variants = [(s.variant, s.when) for s in model.specs if s.variant is not None]
        return variants, spec.environments, {}
    lock = lockfile.read(root / _runtime.LOCK_NAME)
    locked = lock.model(name) if lock else None
    if locked is None:
        raise ModelNotFoundError(name, [m.name for m in lock.models] if lock else [])
    return [(v.name, v.when) for v in locked.variants], None, dict(locked.environments)


def explain(root: Path, name: str, environment: str | None = None) -> dict[str, Any]:
    variants, environments, locked_choice = _variants(root, name)
    environment = environment or _env.get(_env.ENV)
    facts: Any
    if environment is not None and environments is None and variants:
        # Only models.lock here: it records each environment's variant, not its facts.
        if environment not in locked_choice:
            declared = ", ".join(sorted(locked_choice)) or "none"
            raise UsageError(f"environment {environment!r} is not declared for model {name!r} in models.lock (declared: {declared})")
        winner = locked_choice[environment]
        rows = [
            {"name": variant, "when": when, "holds": variant == winner, "clauses": [], "from": "models.lock"}
            for variant, when in variants
        ]
        return {"model": name, "environment": environment, "variants": rows, "winner": winner}
    if environment is not None:
        environments = environments or {}
        if environment not in environments:
            declared = ", ".join(sorted(environments)) or "none"
            raise UsageError(f"environment {environment!r} is not declared in models.toml (declared: {declared})")
        facts = environments[environment]
        source_of = lambda fact: f"environment:{environment}"  # noqa: E731
    else:
        from . import hardware

        needed = frozenset().union(*(markers.parse(when).facts for _, when in variants if when)) if variants else frozenset()
        detected = hardware.detect(need=needed)
        facts = detected
        source_of = lambda fact: detected.fact(fact).source if detected.fact(fact) else None  # noqa: E731
    rows = []
    winner = None
    for variant, when in variants:
        if when is None:
            holds, clauses = True, []
        else:
            marker = markers.parse(when)
            holds = marker.evaluate(facts)
            clauses = [
                {"text": c.text, "fact": c.fact, "value": _jsonable(c.value), "result": c.result, "source": source_of(c.fact)}
                for c in marker.explain(facts)
            ]
        rows.append({"name": variant, "when": when, "holds": holds, "clauses": clauses})
        if holds and winner is None:
            winner = variant
    return {"model": name, "environment": environment, "variants": rows, "winner": winner if variants else None}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return value
