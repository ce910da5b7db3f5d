"""Runs a plan: fetch missing blobs in parallel, then place view files.

Fetching is grouped into tasks (one per URL, per wheel, per local file) and
run on a thread pool of ``jobs`` threads; the small files of one server share
pipelined streams instead (pipeline.py), and from the CLI a plan of many small
files is first split over worker processes (workers.py). Every byte is hashed
as it arrives, never in a second pass. A failed task fails only its own files:
the rest of the plan still completes, so a later run has less to do.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from pathlib import Path
from typing import Callable, Protocol

from . import pipeline, sources, view, workers
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


class Outcome:
    """What a run did, filled in as it goes."""

    def __init__(self) -> None:
        self.placed: dict[str, dict[str, int]] = {}  # view key -> stat record
        self.methods: set[str] = set()  # link methods used
        self.failures: list[tuple[str, str, ModelsyncError]] = []  # (model, path, error)
        self.fetched_bytes = 0
        self.workers = 0  # processes that fetched: 0 none (nothing to fetch), 1 this one, more: worker processes (workers.py)


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
    # Plain threads taking calls off a shared deque: all that a ThreadPoolExecutor
    # did here, without importing concurrent.futures and logging (~6 ms of every sync).
    todo = deque(calls)  # popleft() is one C call: the threads share it without a lock
    throttle = Throttle(max(1, min(ctx.jobs, len(calls))))
    finished = itertools.count(1)  # the same for a counter
    all_done = threading.Event()  # set: every call ran, or one failed, or the run was stopped
    failures: list[BaseException] = []

    def take_calls() -> None:
        while not all_done.is_set():
            try:
                call = todo.popleft()
            except IndexError:
                return
            try:
                with throttle:
                    call()
            except BaseException as error:  # noqa: BLE001 - a bug: calls catch what they expect
                failures.append(error)
                all_done.set()
            if next(finished) == len(calls):
                all_done.set()

    threads = [threading.Thread(target=take_calls, name="modelsync-fetch") for _ in range(throttle.high)]
    try:
        for thread in threads:
            thread.start()
        # This thread wakes once per tick, not once per call (it would fight the
        # workers for the GIL 2000 times), and adjusts the throttle.
        while not all_done.wait(TICK):
            throttle.tick()
        if failures:
            raise failures[0]
    except BaseException:
        ctx.interrupt()
        all_done.set()  # what has not started never will
        throttle.adjust(busy=0.0)  # every token back: tasks already waiting for one end at once
        raise
    for thread in threads:
        thread.join()


def _tasks(plan: Plan, lock: Lock) -> list[tuple[str, list[FetchItem]]]:
    grouped: dict[str, tuple[str, list[FetchItem]]] = {}
    task_keys: dict[str, Callable[[FetchItem], str]] = {}  # each kind's, looked up once
    for item in plan.fetch:
        model = lock.model(item.model)
        assert model is not None
        kind = sources.kind_of(model, item.file)
        task_key = task_keys.get(kind) or task_keys.setdefault(kind, sources.module(kind).task_key)
        grouped.setdefault(task_key(item), (kind, []))[1].append(item)
    return list(grouped.values())


class _Run:
    """One run's bookkeeping: which view files wait for which blob, what was
    placed, what failed. Worker processes run the same ``fetch`` with ``sink``
    pointed at their pipe; the events come back to this process's ``place``
    (a blob stored), ``failed`` and ``blob_failed``."""

    def __init__(self, plan: Plan, lock: Lock, ctx: sources.Context, view_root: Path, link_mode: str, reporter: Reporter) -> None:
        self.plan = plan
        self.lock = lock
        self.ctx = ctx
        self.root = str(view_root)
        self.link_mode = link_mode
        self.reporter = reporter
        self.outcome = Outcome()
        self.failed_blobs: set[str] = set()
        self.sink: _Run | workers.EventPipe = self
        self.links: dict[str, list[FetchItem]] = {}
        for item in plan.link:
            self.links.setdefault(item.file.blake3, []).append(item)

    # Events: what happened to a file, applied in this process (the sink of a
    # thread run, and of every worker process's events).

    def placed(self, model: str, path: str, size: int, key: str, record: dict[str, int], method: str) -> None:
        self.outcome.methods.add(method)
        self.outcome.placed[key] = record
        self.reporter.file_done(model, path, size)

    def failed(self, model: str, path: str, failure: ModelsyncError) -> None:
        self.outcome.failures.append((model, path, failure))
        if not isinstance(failure, Interrupted):  # one "interrupted" for the run, not one per file
            self.reporter.file_failed(model, path, failure)

    def blob_failed(self, digest: str) -> None:
        self.failed_blobs.add(digest)

    # The work, run by threads here or in a worker process.

    def fail(self, item: FetchItem, error: Exception) -> None:
        self.sink.failed(item.model, item.file.path, as_modelsync_error(error))

    def stored(self, digest: str) -> None:
        """A blob is in the store: its view files go in place now. A worker
        process leaves them to its parent, which alone makes the view's folders
        (three processes making 2000 folders in one directory queue for its lock:
        a mkdir took 68 µs of CPU there, 37 µs in one process)."""
        if self.sink is self:
            self.place(digest)
        else:
            self.sink.stored(digest)

    def place(self, digest: str) -> None:
        """Put a blob's view files in place."""
        store = self.ctx.store
        for item in self.links.pop(digest, []):
            key = view_key(item.model, item.file.path)
            target = os.path.join(self.root, key)
            try:
                method = view.place(store.blob_file(digest), target, self.link_mode, store.device)
                record = stat_record(target)
                record["blake3"] = digest
            except OSError as error:
                self.fail(item, error)
            else:
                self.placed(item.model, item.file.path, item.file.size, key, record, method)

    def calls(self, tasks: list[tuple[str, list[FetchItem]]]) -> list[Callable[[], None]]:
        """What the thread pool runs: small files of one server share pipelined
        streams (pipeline.py); every other task is a call of its own."""
        by_server: dict[str, list[FetchItem]] = {}
        alone: list[tuple[str, list[FetchItem]]] = []
        for kind, items in tasks:
            server = pipeline.origin(kind, items)
            if server is None:
                alone.append((kind, items))
            else:
                by_server.setdefault(server, []).extend(items)
        calls: list[Callable[[], None]] = []
        for items in by_server.values():
            parts = pipeline.streams(items, self.ctx.jobs)
            calls += [lambda part=part: self.stream(part) for part in parts]
            if not parts:
                alone += [("url", [item]) for item in items]
        return calls + [lambda kind=kind, items=items: self.fetch(kind, items) for kind, items in alone]

    def stream(self, items: list[FetchItem]) -> None:
        """Small files over one pipelined connection; what it leaves goes the normal way."""
        done: set[str] = set()

        def published(item: FetchItem) -> None:
            done.add(item.file.blake3)
            self.stored(item.file.blake3)

        try:
            left = pipeline.fetch(items, self.ctx, published)
        except Exception as error:  # Ctrl-C, a full disk: what is not in the store fails
            self.failed_task([item for item in items if item.file.blake3 not in done], error)
            return
        # On the pool's terms, as without the pipeline: a server that redirects every
        # file, or is down, must not have its files fetched one after another.
        run_parallel([lambda item=item: self.fetch("url", [item]) for item in left], self.ctx)

    def fetch(self, kind: str, items: list[FetchItem]) -> None:
        try:
            sources.module(kind).fetch(items, self.ctx)
        except Exception as error:  # one task's failure fails only its files
            self.failed_task(items, error)
            return
        for item in items:
            self.stored(item.file.blake3)

    def failed_task(self, items: list[FetchItem], error: Exception) -> None:
        for item in items:
            if self._from_alternatives(item.file.blake3):
                self.stored(item.file.blake3)
                continue
            self.sink.blob_failed(item.file.blake3)
            for linked in self.links.pop(item.file.blake3, [item]):
                self.fail(linked, error)

    def _from_alternatives(self, digest: str) -> bool:
        """The same bytes from another model's source, when the first one failed."""
        for other in self.plan.alternatives.get(digest, ()):
            model = self.lock.model(other.model)
            assert model is not None
            try:
                sources.module(sources.kind_of(model, other.file)).fetch([other], self.ctx)
                return True
            except Exception as error:  # noqa: BLE001 - the next source may still work
                as_modelsync_error(error)  # a bug is raised, an expected failure tries the next
        return False

    def files_of(self, tasks: list[tuple[str, list[FetchItem]]]) -> list[FetchItem]:
        """The view files that wait on these tasks' blobs."""
        return [linked for _, items in tasks for item in items for linked in self.links.get(item.file.blake3, [item])]


def run(
    plan: Plan,
    lock: Lock,
    ctx: sources.Context,
    view_root: Path,
    link_mode: str,
    reporter: Reporter,
    *,
    may_fork: bool = False,
) -> Outcome:
    """``may_fork``: the caller owns the process (the CLI), so a plan of many
    small files may run in worker processes (``workers.count`` says when)."""
    state = _Run(plan, lock, ctx, view_root, link_mode, reporter)
    tasks = _tasks(plan, lock)
    schedule = workers.schedule(tasks, ctx.jobs) if may_fork else None
    running: list[workers.Worker] = []
    if schedule is not None:
        schedule.open()
        try:  # forked before anything starts a thread (the progress bar's, the pool's)
            running = workers.start([lambda jobs=jobs: _in_worker(state, schedule, jobs) for jobs in schedule.jobs])
        finally:
            schedule.close()  # the workers hold it now
    state.outcome.workers = len(running) or min(1, len(tasks))
    reporter.start(plan.fetch_bytes, len(plan.link))
    ctx.progress = reporter.advance

    fetching = {item.file.blake3 for item in plan.fetch}
    for digest in [d for d in state.links if d not in fetching]:
        state.place(digest)  # already in the store: only the view is missing
    if running:
        assert schedule is not None
        _wait_for_workers(state, running, schedule)
    else:
        run_parallel(state.calls(tasks), ctx)
    outcome = state.outcome
    outcome.fetched_bytes = sum(item.file.size for item in plan.fetch if item.file.blake3 not in state.failed_blobs)

    for key in plan.remove:
        view.remove(view_root, key)
    reporter.finish()
    return outcome


def _in_worker(state: _Run, schedule: workers.Schedule, jobs: int) -> None:
    """A worker process's part of the run: batches of the schedule, one after
    another, on its share of the connections, every event sent to the parent
    through ``workers.pipe``."""
    ctx = state.ctx
    ctx.after_fork(jobs)
    pipe = workers.pipe()
    pipe.on_broken = ctx.interrupt  # the parent is gone: stop, keep what is resumable
    state.sink = pipe
    ctx.progress = pipe.advance
    while not ctx.cancel.is_set() and (batch := schedule.take()) is not None:
        pipe.took(batch)
        # A stream's connection goes back to the pool at the end of a batch, and the next one reuses it.
        run_parallel(state.calls(schedule.batches[batch]), ctx)


def _wait_for_workers(state: _Run, running: list[workers.Worker], schedule: workers.Schedule) -> None:
    """Apply the workers' events as they come; then fail, with the reason, every
    file a worker did not report on (it crashed, or was killed), and every file
    of a batch no worker took (they all stopped first)."""
    reported: set[tuple[str, str]] = set()
    stored: set[str] = set()

    def apply(name: str, args: tuple) -> None:
        if name == "advance":
            state.reporter.advance(*args)
            return
        if name == "stored":
            stored.add(args[0])
            state.place(args[0])
            return
        if name == "failed":
            reported.add((args[0], args[1]))
        getattr(state, name)(*args)

    workers.wait(running, apply, state.ctx.cancel)
    taken_by = {batch: worker for worker in running for batch in worker.batches}
    stopped = [worker for worker in running if worker.last != "done"]
    for batch, tasks in enumerate(schedule.batches):
        worker = taken_by.get(batch) or (stopped[0] if stopped else None)
        for item in state.files_of(tasks):
            if (item.model, item.file.path) not in reported and item.file.blake3 not in stored:
                state.blob_failed(item.file.blake3)
                failure = worker.failure() if worker is not None else OperationalError("no download worker process took this file")
                state.failed(item.model, item.file.path, failure)
