"""`modelsync sync`: bring the lock up to date, plan, run the plan, record the state.

This is the one orchestration of the sync; the CLI and ``modelsync.sync()``
both call ``sync_project``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple

from . import _env, _runtime, engine, lockfile, sources, uptodate, view
from . import settings as manifest_settings
from . import plan as planning
from ._records import EMPTY
from ._units import human_size
from .errors import OfflineError, OperationalError, StaleLockError, SyncFailed, UsageError
from .lockfile import Lock
from .selection import NoVariantError, Selection, choose, facts_needed
from .store import Store


class SyncOptions(NamedTuple):
    locked: bool = False  # fail if models.lock is stale
    frozen: bool = False  # use models.lock as it is; read no model from models.toml
    offline: bool | None = None  # None: MODELSYNC_OFFLINE decides
    dry_run: bool = False
    groups: tuple[str, ...] = ()
    jobs: int | None = None  # None: MODELSYNC_JOBS, else 8 (_env.jobs)
    environment: str | None = None  # a declared environment picks the variants; None: MODELSYNC_ENV, else detect
    all_variants: bool = False  # also bring every other variant's files into the cache
    # Only these models, added to what the view holds: nothing else is removed
    # (ensure() of one model). Empty: every model of ``groups``, exactly.
    models: tuple[str, ...] = ()
    lock_file: Path | None = None  # a lock elsewhere than the project (a frozen app's bundle); implies frozen
    may_fork: bool = False  # the caller owns the process (the CLI): many small files may go to worker processes


class SyncReport(NamedTuple):
    root: Path
    view_root: Path
    plan: planning.Plan
    lock_written: bool = False
    lock_pending: tuple[str, ...] = ()  # dry run: models that `lock` would resolve
    variants: Mapping[str, str | None] = EMPTY  # model -> the variant this machine gets
    outcome: engine.Outcome | None = None  # None on a dry run
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        outcome = self.outcome
        return uptodate.report(
            self.root,
            self.view_root,
            dry_run=outcome is None,
            lock_written=self.lock_written,
            lock_pending=list(self.lock_pending),
            models=list(self.plan.models),
            variants=self.variants,
            fetch=[{"model": i.model, "path": i.file.path, "size": i.file.size} for i in self.plan.fetch],
            link=[{"model": i.model, "path": i.file.path} for i in self.plan.link],
            remove=list(self.plan.remove),
            fetched_bytes=outcome.fetched_bytes if outcome else 0,
            link_methods=sorted(outcome.methods) if outcome else [],
            workers=outcome.workers if outcome else 0,
            warnings=list(self.warnings),
        )


class LockInUse(NamedTuple):
    """The lock a sync works from, and the exact text it was read from or written as."""

    lock: Lock
    text: str  # its sha256 goes into the state: path() serves this lock's view, and no other
    settings: manifest_settings.Settings
    written: bool = False
    pending: tuple[str, ...] = ()  # dry run: models that `lock` would resolve


def current_lock(root: Path, options: SyncOptions, ctx: sources.Context) -> LockInUse:
    """The lock to sync from: as it is (--frozen, --locked), or brought up to date first."""
    lock_path = options.lock_file or root / _runtime.LOCK_NAME
    old_text = lockfile.read_text(lock_path)
    if options.frozen or options.lock_file is not None:
        if old_text is None:
            raise UsageError(f"--frozen needs {lock_path}, which does not exist", hint="run `modelsync lock` first")
        lock = lockfile.loads(old_text, lock_path.name)
        return LockInUse(lock, old_text, manifest_settings.load(root / _runtime.MANIFEST_NAME))
    # Only here: a frozen sync reads no model, and these imports cost ~15 ms.
    from . import locker, manifest

    spec = manifest.load(root / _runtime.MANIFEST_NAME)
    old = lockfile.loads(old_text, lock_path.name) if old_text is not None else None
    if options.locked:
        fresh, stale = locker.is_fresh(spec, old, old_text)
        if not fresh:
            what = f" (models: {', '.join(stale)})" if stale else ""
            raise StaleLockError(
                f"models.lock is out of date with models.toml{what}",
                hint="run `modelsync lock` and commit models.lock, or drop --locked",
            )
        assert old is not None and old_text is not None
        return LockInUse(old, old_text, spec.settings)
    if options.dry_run:
        pending = tuple(sorted({s.name for s in locker.pending(spec, old)}))
        kept = tuple(m for m in (old.models if old else ()) if spec.model(m.name) and m.name not in pending)
        return LockInUse(Lock(spec.hash, kept), old_text or "", spec.settings, pending=pending)
    outcome = locker.lock(spec, old, ctx, offline=bool(options.offline))
    written = lockfile.write(lock_path, outcome.lock)
    return LockInUse(outcome.lock, lockfile.dumps(outcome.lock), spec.settings, written=written)


def _check_offline(plan: planning.Plan, lock: Lock) -> None:
    missing = []
    for item in plan.fetch:
        model = lock.model(item.model)
        assert model is not None
        kind = sources.kind_of(model, item.file)
        if kind == "path" or (kind == "hf" and sources.module("hf").in_hf_cache(item)):
            continue  # copied from this machine, no network needed
        missing.append((item.model, item.file.path, item.file.size))
    if missing:
        lines = "\n".join(f"  {m}/{p}  ({human_size(s)})" for m, p, s in missing)
        total = human_size(sum(s for _, _, s in missing))
        raise OfflineError(
            f"offline, and {len(missing)} file(s) ({total}) are not in the cache:\n{lines}",
            missing=missing,
            hint="run `modelsync sync` with the network on (or fill MODELSYNC_CACHE_DIR from another machine)",
        )


def _check_space(store: Store, plan: planning.Plan, view_root: Path, link_mode: str) -> None:
    """Fail before the first byte when the files cannot fit.

    What a partial download already holds (or reserved) is not needed again.
    View files are links into the cache when they can be; copies (``link =
    "copy"``, or a view on another device) need room of their own."""
    store.prepare()
    held = _partials_held(store) if plan.fetch else {}
    needed = sum(max(0, item.file.size - held.get(item.file.blake3, 0)) for item in plan.fetch)
    _require(store.root, needed, "the cache", "point MODELSYNC_CACHE_DIR at a larger disk")
    try:
        same_device = os.stat(view_root.parent).st_dev == os.stat(store.root).st_dev
    except OSError:
        same_device = True
    copies = sum(item.file.size for item in plan.link)
    if not same_device:
        _require(view_root.parent, copies, "the project's view", "free space next to models.toml")
    elif link_mode == "copy":
        _require(store.root, needed + copies, "the cache and the view's copies", 'use link = "auto", or free some space')


def _partials_held(store: Store) -> dict[str, int]:
    """Bytes on disk of each partial download, by blake3: one listing, not a stat per file."""
    held: dict[str, int] = {}
    try:
        with os.scandir(store.partial_dir) as entries:
            for entry in entries:
                try:
                    held[entry.name] = entry.stat(follow_symlinks=False).st_blocks * 512
                except (OSError, AttributeError):  # gone meanwhile; st_blocks is POSIX only
                    continue
    except OSError:
        pass
    return held


def _require(folder: Path, needed: int, what: str, hint: str) -> None:
    free = _free_space(folder)
    if needed > free:
        raise OperationalError(
            f"not enough disk space for {what} ({folder}): {human_size(needed)} needed, {human_size(free)} free",
            hint=f"free some space, or {hint}; nothing was downloaded",
        )

def _free_space(folder: Path) -> int:
    """Bytes this user may still write at ``folder``: ``shutil.disk_usage`` without
    importing shutil (and with it lzma and bz2: ~4 ms of every sync)."""
    if hasattr(os, "statvfs"):
        info = os.statvfs(folder)
        return info.f_bavail * info.f_frsize
    import shutil

    return shutil.disk_usage(folder).free


def _state(
    in_use: LockInUse,
    view_dir: str,
    chosen: dict[str, Selection],
    records: dict[str, dict[str, int]],
    facts: dict[str, Any],
    stamp: dict[str, Any],
    others: dict[str, Any],
) -> dict[str, Any]:
    lock = in_use.lock
    synced: dict[str, Any] = dict(others)
    for name, selection in chosen.items():
        model = lock.model(name)
        assert model is not None
        variant = selection.variant
        paths = [f.path for f in model.files_of(variant)]
        if all(planning.view_key(name, path) in records for path in paths):  # only complete models are visible to path()
            synced[name] = {
                "single": model.is_single(variant),
                "loader": model.loader,
                "variant": variant,
                "reason": selection.reason,
                # The paths only: their records are in "placed" (once: a state of 2000 files
                # was twice the size, and its JSON took a sync twice as long to write).
                "files": sorted(paths),
            }
    return {
        "version": _runtime.STATE_VERSION,
        "lock-sha256": _sha256(in_use.text),
        "view": view_dir,
        "lock-models": [model.name for model in lock.models],
        "selection": facts,  # what chose the variants: the environment, or the detected facts and their sources
        "sync": stamp,  # what the sync was asked and whether it completed: the no-op check (uptodate.py)
        "models": synced,
        # Every view file this sync placed or kept, complete model or not: what the
        # next sync may trust without a download, and may remove when it is no longer wanted.
        "placed": records,  # written with sorted keys, as every table of the state
    }


def _has_local_sources(lock: Lock) -> bool:
    """Whether a file of the lock comes from a local path (the no-op check never trusts those)."""
    # Only a file with a `source` table can be one: kind_of (a dict merge a file) is asked of those only.
    return any(file.source and sources.kind_of(model, file) == "path" for model in lock.models for file in model.files)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _chosen_models(lock: Lock, options: SyncOptions) -> tuple[str, ...]:
    if not options.models:
        return planning.models_in(lock, options.groups)
    known = [model.name for model in lock.models]
    for name in options.models:
        if name not in known:
            from .errors import ModelNotFoundError

            raise ModelNotFoundError(name, known)
    return options.models


def choose_variants(
    lock: Lock, models: tuple[str, ...], environment: str | None, *, strict: bool = True
) -> tuple[dict[str, Selection], dict[str, Any], list[str]]:
    """(selections, what chose them, warnings): detect hardware only when a model has variants.

    A model no variant of which fits fails the call when it is required and
    ``strict``; otherwise it is left out with a warning."""
    environment = environment or _env.get(_env.ENV)
    declared = {name for model in lock.models for name in model.environments}
    if environment is not None and declared and environment not in declared:
        raise UsageError(
            f"environment {environment!r} is not declared (models.lock knows: {', '.join(sorted(declared))})",
            hint="check the spelling of --env / MODELSYNC_ENV, or declare it in [environments] and run `modelsync lock`",
        )
    described: dict[str, Any] = {"environment": environment, "facts": None}
    facts = None
    if environment is None and any(lock.model(name).variants for name in models):  # type: ignore[union-attr]
        from . import hardware

        detected = hardware.detect(need=facts_needed(lock, models))
        facts = detected
        described["facts"] = detected.to_json()
    chosen: dict[str, Selection] = {}
    warnings: list[str] = []
    for name in models:
        model = lock.model(name)
        assert model is not None
        try:
            chosen[name] = choose(model, facts, environment)
        except NoVariantError as error:
            if strict and not model.optional:
                raise
            warnings.append(f"{'optional ' if model.optional else ''}model {name}: {error.message}")
    return chosen, described, warnings


def sync_project(
    root: Path,
    options: SyncOptions = SyncOptions(),
    *,
    reporter: engine.Reporter | None = None,
    progress: Callable[[int, int], None] | None = None,
    store: Store | None = None,
    cancel: threading.Event | None = None,
) -> SyncReport:
    """``cancel``: set it (from any thread) to stop soon; the call then raises
    ``Interrupted`` and what was downloaded is kept for the next call."""
    if reporter is None:
        reporter = engine.CallbackReporter(progress) if progress else engine.NullReporter()
    offline = options.offline if options.offline is not None else _env.flag(_env.OFFLINE)
    options = options._replace(offline=offline)
    _env.check_transfer_settings()  # a bad value is bad input: say so before any work
    manifest_sha256 = uptodate.file_sha256(root / _runtime.MANIFEST_NAME)  # before it is read: a later edit is not vouched for
    store = store or Store()
    store.clean_stale_temp()
    ctx = sources.Context(store=store, project_root=root, jobs=_env.jobs(options.jobs), offline=bool(offline))
    if cancel is not None:
        ctx.cancel = cancel
    with _interrupt_on(cancel, ctx):
        return _sync(root, options, ctx, store, reporter, manifest_sha256)


@contextlib.contextmanager
def _interrupt_on(cancel: threading.Event | None, ctx: sources.Context) -> Iterator[None]:
    """While the sync runs, a set ``cancel`` also unblocks reads waiting on the network."""
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            if cancel.is_set():
                ctx.interrupt()
                return

    watcher = threading.Thread(target=watch, name="modelsync-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _sync(root: Path, options: SyncOptions, ctx: sources.Context, store: Store, reporter: engine.Reporter, manifest_sha256: str | None) -> SyncReport:
    offline = options.offline

    in_use = current_lock(root, options, ctx)
    lock, settings = in_use.lock, in_use.settings
    view_root = root / settings.dir
    models = _chosen_models(lock, options)
    chosen, described, skipped = choose_variants(lock, models, options.environment)
    variants = {name: selection.variant for name, selection in chosen.items()}
    previous = _runtime.read_state(root)
    if previous is not None and previous.get("view") != settings.dir:
        previous = None  # the view moved: the old one is left alone
    observed = planning.observe(lock, variants, store, view_root, previous, all_variants=options.all_variants)
    plan = planning.make_plan(lock, variants, observed, all_variants=options.all_variants)
    if options.models:
        plan = plan._replace(remove=())  # additive: the other models of the view stay
    if options.dry_run:
        return SyncReport(root, view_root, plan, lock_pending=in_use.pending, variants=variants, warnings=tuple(skipped))
    if offline:
        _check_offline(plan, lock)
    if plan.fetch or plan.link:
        _check_space(store, plan, view_root, settings.link)

    view.prepare(view_root)
    outcome = engine.run(plan, lock, ctx, view_root, settings.link, reporter, may_fork=options.may_fork)

    stamp = uptodate.stamp(
        manifest_sha256=manifest_sha256,
        lock_fresh=not options.frozen,
        local_sources=_has_local_sources(lock),
        groups=options.groups,
        all_variants=options.all_variants,
        complete=not outcome.failures and not skipped and not options.models,
    )
    with _state_lock(root):
        others: dict[str, Any] = {}  # additive: what the view holds of other models, as the latest state says
        if options.models:
            # Another thread may have ensured another model meanwhile: merge with the state as it is now.
            latest = _runtime.read_state(root)
            if latest is not None and latest.get("lock-sha256") == _sha256(in_use.text):  # entries of another lock may be stale
                others = {name: entry for name, entry in latest.get("models", {}).items() if name not in chosen}
            previous = latest if latest is not None and latest.get("view") == settings.dir else previous
        records = {
            key: record
            for key, record in planning.placed_records(previous).items()
            if key in observed.view_ok or (options.models and key.split("/", 1)[0] not in chosen)
        }
        records.update(outcome.placed)
        view.write_state(root, _state(in_use, settings.dir, chosen, records, described, stamp, others))
    optional = {model.name for model in lock.models if model.optional}
    fatal = [failure for failure in outcome.failures if failure[0] not in optional]
    ctx.check_cancelled()  # cancelled: the files that finished are recorded, the rest resumes next time

    warnings = tuple(skipped) + tuple(
        f"optional model {m} was not synced: {e.message}" for m, _, e in outcome.failures if m in optional
    )
    if fatal:
        if len(fatal) == 1:
            raise fatal[0][2]
        raise SyncFailed(fatal)
    return SyncReport(root, view_root, plan, lock_written=in_use.written, outcome=outcome, warnings=warnings, variants=variants)


_state_locks: dict[Path, threading.Lock] = {}
_state_locks_guard = threading.Lock()


def _state_lock(root: Path) -> threading.Lock:
    """Threads of one process update a view's state one at a time (ensure() of two models at once)."""
    with _state_locks_guard:
        return _state_locks.setdefault(root, threading.Lock())
