"""Runs a plan: fetch missing blobs in parallel, then place view files.

Fetching is grouped into tasks (one per URL, per wheel, per local file) and
run on a thread pool of ``jobs`` workers; every byte is hashed as it arrives
(by the store's writer), never in a second pass. A failed task fails only its
own files: the rest of the plan still completes, so a later run has less to do.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from . import sources, view
from ._throttle import TICK, Throttle
from .errors import Interrupted, ModelsyncError, OperationalError
from .lockfile import Lock
from .plan import Plan, stat_record, view_key
from .sources import FetchItem


class Reporter(Protocol):
    """Progress sink; called from worker threads, so implementations must be thread-safe."""

    def start(self, total_bytes: int, total_files: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, model: str, path: str, size: int) -> None: ...
    def file_failed(self, model: str, path: str, error: ModelsyncError) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    def start(self, total_bytes: int, total_files: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, model: str, path: str, size: int) -> None: ...
    def file_failed(self, model: str, path: str, error: ModelsyncError) -> None: ...
    def finish(self) -> None: ...


class CallbackReporter(NullReporter):
    """Adapts ``progress(done_bytes, total_bytes)`` callbacks of the Python API."""

    def __init__(self, callback) -> None:  # type: ignore[no-untyped-def]
        self.callback = callback
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()

    def start(self, total_bytes: int, total_files: int) -> None:
        self.total = total_bytes
        self.callback(0, total_bytes)

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            done = self.done
        self.callback(done, self.total)


@dataclass
class Outcome:
    placed: dict[str, dict[str, int]] = field(default_factory=dict)  # view key -> stat record
    methods: set[str] = field(default_factory=set)  # link methods used
    failures: list[tuple[str, str, ModelsyncError]] = field(default_factory=list)  # (model, path, error)
    fetched_bytes: int = 0


def as_modelsync_error(error: Exception) -> ModelsyncError:
    """An expected failure as a ModelsyncError; anything else (a bug) is re-raised."""
    if isinstance(error, ModelsyncError):
        return error
    if isinstance(error, OSError):
        return OperationalError(
            f"{error.strerror or error} ({error.filename or 'cache'})",
            hint="check free space and permissions of the cache (MODELSYNC_CACHE_DIR) and the project",
        )
    raise error


def run_parallel(calls: list[Callable[[], None]], ctx: sources.Context) -> None:
    """Run ``calls`` on ``ctx.jobs`` threads, as many at once as the throttle allows;
    on Ctrl-C cancel what has not started and tell running ones to stop
    (``ctx.cancel``) instead of waiting for them."""
    if not calls:
        return
    workers = max(1, min(ctx.jobs, len(calls)))
    pool = ThreadPoolExecutor(max_workers=workers)
    throttle = Throttle(workers)
    finished = itertools.count(1)  # next() is one C call: a counter without a Python lock
    all_done = threading.Event()
    failures: list[BaseException] = []

    def throttled(call: Callable[[], None]) -> None:
        try:
            with throttle:
                call()
        except BaseException as error:  # noqa: BLE001 - a bug: calls catch what they expect
            failures.append(error)
            all_done.set()
        if next(finished) == len(calls):
            all_done.set()

    try:
        for call in calls:
            pool.submit(throttled, call)
        # This thread wakes once per tick, not once per call (it would fight the
        # workers for the GIL 2000 times), and adjusts the throttle.
        while not all_done.wait(TICK):
            throttle.tick()
        if failures:
            raise failures[0]
    except BaseException:
        ctx.interrupt()
        throttle.adjust(busy=0.0)  # every token back: tasks already waiting for one end at once
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _tasks(plan: Plan, lock: Lock) -> list[tuple[str, list[FetchItem]]]:
    grouped: dict[str, tuple[str, list[FetchItem]]] = {}
    for item in plan.fetch:
        model = lock.model(item.model)
        assert model is not None
        kind = sources.kind_of(model, item.file)
        key = sources.module(kind).task_key(item)
        grouped.setdefault(key, (kind, []))[1].append(item)
    return list(grouped.values())


def run(plan: Plan, lock: Lock, ctx: sources.Context, view_root: Path, link_mode: str, reporter: Reporter) -> Outcome:
    outcome = Outcome()
    failed_blobs: set[str] = set()
    reporter.start(plan.fetch_bytes, len(plan.link))
    ctx.progress = reporter.advance

    links: dict[str, list[FetchItem]] = {}
    for item in plan.link:
        links.setdefault(item.file.blake3, []).append(item)

    def fail(item: FetchItem, error: Exception) -> None:
        failure = as_modelsync_error(error)
        outcome.failures.append((item.model, item.file.path, failure))
        if not isinstance(failure, Interrupted):  # one "interrupted" for the run, not one per file
            reporter.file_failed(item.model, item.file.path, failure)

    root = str(view_root)

    def place(digest: str) -> None:
        """Put a blob's view files in place as soon as the blob is in the store."""
        for item in links.pop(digest, []):
            key = view_key(item.model, item.file.path)
            target = os.path.join(root, key)
            try:
                outcome.methods.add(view.place(ctx.store.blob_file(digest), target, link_mode, ctx.store.device))
                outcome.placed[key] = {"blake3": digest, **stat_record(target)}
            except OSError as error:
                fail(item, error)
            else:
                reporter.file_done(item.model, item.file.path, item.file.size)

    def fetch(kind: str, items: list[FetchItem]) -> None:
        try:
            sources.module(kind).fetch(items, ctx)
        except Exception as error:  # one task's failure fails only its files
            for item in items:
                if _from_alternatives(item.file.blake3):
                    place(item.file.blake3)
                    continue
                failed_blobs.add(item.file.blake3)
                for linked in links.pop(item.file.blake3, [item]):
                    fail(linked, error)
            return
        for item in items:
            place(item.file.blake3)

    def _from_alternatives(digest: str) -> bool:
        """The same bytes from another model's source, when the first one failed."""
        for other in plan.alternatives.get(digest, ()):
            model = lock.model(other.model)
            assert model is not None
            try:
                sources.module(sources.kind_of(model, other.file)).fetch([other], ctx)
                return True
            except Exception as error:  # noqa: BLE001 - the next source may still work
                as_modelsync_error(error)  # a bug is raised, an expected failure tries the next
        return False

    fetching = {item.file.blake3 for item in plan.fetch}
    for digest in [d for d in links if d not in fetching]:
        place(digest)  # already in the store: only the view is missing
    run_parallel([lambda kind=kind, items=items: fetch(kind, items) for kind, items in _tasks(plan, lock)], ctx)
    outcome.fetched_bytes = sum(item.file.size for item in plan.fetch if item.file.blake3 not in failed_blobs)

    for key in plan.remove:
        view.remove(view_root, key)
    reporter.finish()
    return outcome
