"""What a sync must do: a pure function of the lock, the selection and what is on disk.

``observe`` looks at the disk (``stat`` only: no hashing, no network);
``make_plan`` turns lock + selection + observation into a frozen ``Plan``.
Dry runs, ``--offline`` and "a second sync does nothing" all read the plan.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ._records import EMPTY
from .errors import UsageError
from .lockfile import Lock
from .sources import FetchItem
from .store import Store


class Observation(NamedTuple):
    blobs: frozenset[str]  # blake3 digests present in the store with the right size
    view_ok: frozenset[str]  # "model/path" in the view, placed by the last sync and unchanged since
    view_owned: frozenset[str]  # "model/path" the last sync placed (ours to remove)


class Plan(NamedTuple):
    models: tuple[str, ...]  # the selected models
    fetch: tuple[FetchItem, ...]  # blobs to bring into the store (one item per blob)
    link: tuple[FetchItem, ...]  # view files to (re)create
    remove: tuple[str, ...]  # "model/path" to delete from the view
    # Other sources of a blob in `fetch` (the same bytes pinned by several models):
    # tried in turn if the first fails. Required models' sources come first.
    alternatives: Mapping[str, tuple[FetchItem, ...]] = EMPTY

    @property
    def empty(self) -> bool:
        return not (self.fetch or self.link or self.remove)

    @property
    def fetch_bytes(self) -> int:
        return sum(item.file.size for item in self.fetch)


def view_key(model: str, path: str) -> str:
    return f"{model}/{path}"


def models_in(lock: Lock, groups: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every model, or only those in ``groups``."""
    if not groups:
        return tuple(model.name for model in lock.models)
    known = {group for model in lock.models for group in model.groups}
    unknown = [group for group in groups if group not in known]
    if unknown:
        raise UsageError(
            f"no model is in group {unknown[0]!r}",
            hint="groups in models.lock: " + (", ".join(sorted(known)) or "none (set `group = \"…\"` on a model)"),
        )
    return tuple(model.name for model in lock.models if set(model.groups) & set(groups))


def make_plan(lock: Lock, variants: Mapping[str, str | None], observed: Observation, *, all_variants: bool = False) -> Plan:
    """``variants``: each selected model and the variant this machine gets (None: no variants).

    The view gets the selected variant's files; ``all_variants`` also brings
    every other variant's blobs into the cache (for images that move between
    machines), without placing them."""
    candidates: dict[str, list[FetchItem]] = {}  # blake3 -> every source that could fetch it
    link: list[FetchItem] = []
    wanted: set[str] = set()
    for name, variant in variants.items():
        model = lock.model(name)
        assert model is not None
        for file in model.files:
            item = FetchItem(name, file, model.source_of(file.variant))
            needed = file.blake3 not in observed.blobs
            if file.variant != variant:
                if all_variants and needed:
                    candidates.setdefault(file.blake3, []).append(item)
                continue
            key = view_key(name, file.path)
            wanted.add(key)
            if key in observed.view_ok:
                continue
            link.append(item)
            if needed:
                candidates.setdefault(file.blake3, []).append(item)
    optional = {model.name for model in lock.models if model.optional}
    fetch, alternatives = [], {}
    for digest, items in candidates.items():
        items.sort(key=lambda item: item.model in optional)  # stable: required models' sources first
        fetch.append(items[0])
        if len(items) > 1:
            alternatives[digest] = tuple(items[1:])
    remove = tuple(sorted(observed.view_owned - wanted))
    return Plan(models=tuple(variants), fetch=tuple(fetch), link=tuple(link), remove=remove, alternatives=alternatives)


def observe(
    lock: Lock,
    variants: Mapping[str, str | None],
    store: Store,
    view_root: Path,
    state: dict[str, Any] | None,
    *,
    all_variants: bool = False,
) -> Observation:
    """Stat the store and the view; trust a view file whose stat matches what the last sync recorded."""
    recorded = placed_records(state)
    blobs: set[str] = set()
    view_ok: set[str] = set()
    # A new cache holds no blob: one stat, not one for each of its files (2000 for a big lock).
    in_store = store.has if store.blobs_dir.is_dir() else lambda digest, size: False
    for name, variant in variants.items():
        model = lock.model(name)
        assert model is not None
        for file in model.files:
            key = view_key(name, file.path)
            if file.variant != variant:
                if all_variants and in_store(file.blake3, file.size):
                    blobs.add(file.blake3)
                continue
            record = recorded.get(key)
            if record is not None and record.get("blake3") == file.blake3 and _same_stat(view_root / key, record):
                view_ok.add(key)
            elif in_store(file.blake3, file.size) and not _shares_inode(view_root / key, store.blob_path(file.blake3)):
                blobs.add(file.blake3)
    return Observation(frozenset(blobs), frozenset(view_ok), frozenset(recorded))


def placed_records(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """"model/path" -> the stat record of every view file the last sync placed,
    complete model or not (its state's `placed`)."""
    if state is None:
        return {}
    if "placed" in state:
        return dict(state["placed"])
    # A state written before `placed` existed: the records of its complete models.
    return {
        view_key(name, path): record
        for name, entry in state.get("models", {}).items()
        if isinstance(entry.get("files"), dict)
        for path, record in entry["files"].items()
    }


def stat_record(path: str | Path) -> dict[str, int]:
    info = os.stat(path)
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ino": info.st_ino}


def _shares_inode(view_file: Path, blob: Path) -> bool:
    """A view file that changed since sync placed it, hardlinked to its blob, means
    the blob changed too: it must not be trusted."""
    try:
        a, b = view_file.stat(), blob.stat()
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same_stat(path: Path, record: dict[str, Any]) -> bool:
    try:
        now = stat_record(path)
    except OSError:
        return False
    return all(record.get(key) == value for key, value in now.items())
