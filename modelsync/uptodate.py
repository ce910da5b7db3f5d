"""The no-op sync: tell from the state file alone that there is nothing to do.

Most syncs (every CI job, every app start-up script) find everything in place.
They must cost nothing: no TOML parsed, no hash of a model file, no network,
no heavy import. The last sync stamped the state with what it was asked and
what it saw (``stamp``); ``check`` proves, with the standard library and a
``stat`` per file, that doing it again would change nothing:

- models.toml and models.lock are byte for byte those of the last sync (a
  sha256 of each), and that sync found the lock fresh (or this one is
  ``--frozen`` and does not care);
- the request is the same: groups, ``--all-variants``, the environment, and,
  where variants were chosen by detected hardware, the same facts now;
- the last sync completed, and every file it placed still has the size,
  mtime and inode it recorded;
- no model comes from a local ``path``: those files can change under the
  same lock, and only re-hashing them (the full path) can tell.

Anything else takes the full path (``syncer.sync_project``), which decides
again from scratch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from . import _env, _runtime


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def stamp(
    *, manifest_sha256: str | None, lock_fresh: bool, local_sources: bool, groups: tuple[str, ...], all_variants: bool, complete: bool
) -> dict[str, Any]:
    """What the state records about the sync that wrote it, for ``check``."""
    return {
        "manifest-sha256": manifest_sha256,
        "lock-fresh": lock_fresh,
        "local-sources": local_sources,
        "groups": sorted(groups),
        "all-variants": all_variants,
        "complete": complete,
    }


def check(root: Path, *, frozen: bool, groups: tuple[str, ...], environment: str | None, all_variants: bool) -> dict[str, Any] | None:
    """The state, when a sync with these options would do nothing; else None."""
    state = _runtime.read_state(root)
    if state is None:
        return None
    stamped = state.get("sync")
    if not isinstance(stamped, dict) or stamped.get("complete") is not True or stamped.get("local-sources") is not False:
        return None
    if stamped.get("groups") != sorted(groups) or stamped.get("all-variants") != all_variants:
        return None
    if not frozen and stamped.get("lock-fresh") is not True:
        return None
    # (None both times: a project of models.lock alone, synced --frozen)
    if file_sha256(root / _runtime.MANIFEST_NAME) != stamped.get("manifest-sha256"):
        return None
    if file_sha256(root / _runtime.LOCK_NAME) != state.get("lock-sha256"):
        return None
    if not _same_selection(state.get("selection"), environment):
        return None
    placed = state.get("placed")
    view_root = root / str(state.get("view", ""))
    if not isinstance(placed, dict):
        return None
    for key, record in placed.items():
        try:
            info = os.stat(view_root / key)
        except OSError:
            return None
        if (info.st_size, info.st_mtime_ns, info.st_ino) != (record.get("size"), record.get("mtime_ns"), record.get("ino")):
            return None
    return state


def _same_selection(selection: Any, environment: str | None) -> bool:
    """Would the variants be chosen the same way now?"""
    if not isinstance(selection, dict):
        return False
    if selection.get("environment") != (environment or _env.get(_env.ENV)):
        return False
    facts = selection.get("facts")
    if facts is None:
        return True  # chosen by the environment, or no model has variants
    if selection.get("environment") is not None or not isinstance(facts, dict):
        return False
    from . import hardware  # stdlib only; a few ms, and only for projects with variants

    now = hardware.detect(need=frozenset(facts)).to_json()
    return all(now.get(name, {}).get("value") == fact.get("value") for name, fact in facts.items())


def report(
    root: Path,
    view_root: Path,
    *,
    dry_run: bool = False,
    lock_written: bool = False,
    lock_pending: list[str] | None = None,
    models: list[str],
    variants: dict[str, str | None],
    fetch: list[dict[str, Any]] | None = None,
    link: list[dict[str, Any]] | None = None,
    remove: list[str] | None = None,
    fetched_bytes: int = 0,
    link_methods: list[str] | None = None,
    workers: int = 0,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The ``sync --json`` document; the no-op path and the full path both build it here."""
    fetch = fetch or []
    return {
        "project": str(root),
        "view": str(view_root),
        "dry_run": dry_run,
        "lock_written": lock_written,
        "lock_pending": lock_pending or [],
        "models": models,
        "variants": variants,
        "fetch": fetch,
        "fetch_bytes": sum(item["size"] for item in fetch),
        "link": link or [],
        "remove": remove or [],
        "fetched_bytes": fetched_bytes,
        "link_methods": link_methods or [],
        "workers": workers,  # processes that fetched: 0 nothing was fetched, 1 threads, more: worker processes
        "warnings": warnings or [],
    }


def noop_report(root: Path, state: dict[str, Any]) -> dict[str, Any]:
    models = state.get("models", {})
    return report(
        root,
        root / str(state.get("view", "")),
        models=list(models),
        variants={name: entry.get("variant") for name, entry in models.items()},
    )
