"""Worker processes for a plan of many small files.

Why processes: one small file costs the engine ~0.3 ms of Python (HTTP,
hashing bookkeeping, temp file, rename, link). Eight threads in one process
spend most of their time handing the GIL to each other (~90 futex calls per
file, measured with strace), so a sync of 2000 × 16 KiB files used one core
and a half to do one core's work. A few forked processes, taking the files
batch by batch (``Schedule``), each with its share of the connections, do it
in about half the time (docs/performance.md).

When: only where it is safe and pays (``schedule``): Linux (fork is cheap and
safe before any thread starts), a caller that owns the process (the CLI, not
the Python API), no thread running yet, enough files to share, and no file
large enough to be fetched as parallel Range parts (those want every
connection in one process). ``MODELSYNC_PROCESSES`` overrides the count;
1 keeps everything in threads.

How: each worker runs the engine's own ``fetch`` on the batches it takes and sends what
happened (bytes moved, a blob stored, a file failed) back through a pipe, as
length-prefixed pickles batched every 50 ms. The parent applies the events as
if its own threads had produced them, and places the view files of each blob
stored: the workers fill the store, the parent alone writes the view (three
processes making a folder each in one directory queue for its lock; moving
that work to the parent, idle while it waits, made the sync of 2000 small
files 5-15 % faster, docs/performance.md). A worker that dies without reporting a
file fails that file with the reason; a bug in a worker is raised in the
parent with the worker's traceback. Ctrl-C reaches only the parent (workers
ignore SIGINT), which stops the workers with SIGTERM; a worker whose parent
dies (even by ``kill -9``) sees its lifeline pipe close and stops the same
way. Stopped workers keep their partial files, as a stopped thread does.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import struct
import sys
import threading
import time
from typing import Any, Callable, Sequence

from . import _env
from .errors import Interrupted, OperationalError

MAX_PROCESSES = 4  # measured: 3-4 saturate two cores; more only adds startup and contention
FILES_PER_PROCESS = 32  # fewer files than this per worker: forking costs more than it saves
FLUSH_EVERY = 0.05  # seconds between a worker's batches of events
STOP_GRACE = 10.0  # seconds a stopped worker gets to wind down before SIGKILL
_HEADER = struct.Struct("!I")

# A worker's exit status says how it ended (its last message says it too, when it got out).
EXIT_DONE, EXIT_INTERRUPTED, EXIT_CRASHED = 0, 130, 70


def count(tasks: int, jobs: int, *, largest: int) -> int:
    """How many worker processes a plan of ``tasks`` tasks gets; 0 or 1: none (threads)."""
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return 0
    explicit = _env.integer(_env.PROCESSES, example="3")
    if threading.active_count() > 1:
        return 0  # forking a process with threads can copy a held lock: never
    from .transfer import settings_from_env

    if largest >= settings_from_env()[0]:
        return 0  # a file fetched as Range parts wants all the connections in one process
    if explicit is not None:
        return min(explicit, tasks, jobs)
    return min(MAX_PROCESSES, (os.cpu_count() or 1) + 1, jobs, tasks // FILES_PER_PROCESS)


MIN_BATCH = 16  # tasks a batch has at least (over pipeline.MIN_FILES: its small files share a stream)
_BATCH = struct.Struct("!I")  # a batch's number in the schedule's pipe


class Schedule:
    """A plan's tasks cut into batches that the worker processes take one at a
    time, as each finishes the last, from a pipe they share.

    Why not a fixed share each: the workers of one machine do not run at one
    speed (a slower start, a busier core), and with fixed shares the fastest one
    idled while the slowest finished (2000 × 16 KiB: the last worker ended
    50-160 ms after the first, a core idle meanwhile). The batches shrink as the
    work runs out (guided self-scheduling: each is 1/(2 × processes) of what is
    left, at least ``MIN_BATCH`` tasks), largest tasks first, so the workers
    finish within a small batch of each other.

    The batch numbers are written into a pipe before the fork, and each worker
    reads one at a time: a read of a 4-byte number from a pipe is atomic, so
    every batch goes to exactly one worker, and the end of the pipe says there
    is nothing left."""

    def __init__(self, batches: list[list[tuple[str, list[Any]]]], jobs: list[int]) -> None:
        self.batches = batches
        self.jobs = jobs  # each worker's share of the connections
        self._read = -1

    def open(self) -> None:
        """Fill the pipe (before the fork): every batch number, then its end."""
        self._read, write = os.pipe()
        try:
            _write_all(write, b"".join(_BATCH.pack(index) for index in range(len(self.batches))))
        finally:
            os.close(write)

    def take(self) -> int | None:
        """The number of the next batch no worker has taken; None when none is left."""
        data = os.read(self._read, _BATCH.size)
        return _BATCH.unpack(data)[0] if data else None

    def close(self) -> None:
        if self._read >= 0:
            os.close(self._read)
            self._read = -1


def schedule(tasks: list[tuple[str, list[Any]]], jobs: int) -> Schedule | None:
    """The plan's tasks for worker processes, each with its share of the ``jobs``
    connections; None when the plan is better run in threads."""

    def size(task: tuple[str, list[Any]]) -> int:
        return sum(item.file.size for item in task[1])

    processes = count(len(tasks), jobs, largest=max((item.file.size for _, items in tasks for item in items), default=0))
    if processes < 2:
        return None
    ordered = sorted(tasks, key=size, reverse=True)  # stable: the plan's order among equals
    # Never more batch numbers than a pipe holds before anyone reads it (PIPE_BUF, 4 KiB).
    smallest = max(MIN_BATCH, -(-len(ordered) // 1000))
    batches: list[list[tuple[str, list[Any]]]] = []
    start = 0
    while start < len(ordered):
        length = max(smallest, (len(ordered) - start) // (2 * processes))
        batches.append(ordered[start : start + length])
        start += length
    return Schedule(batches, [jobs // processes + (p < jobs % processes) for p in range(processes)])


# --------------------------------------------------------------------------
# In the worker


class EventPipe:
    """A worker's events to its parent: thread-safe, batched, one write per batch.

    Has the engine's event methods (``stored``, ``failed``, ``blob_failed``)
    and ``advance`` for progress. When the parent is gone (the pipe broke)
    ``on_broken`` is called once: the worker stops, keeping what resumes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.on_broken: Callable[[], None] = lambda: None
        self.broken = False
        self._events: list[tuple[str, tuple[Any, ...]]] = []
        self._bytes = 0
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._bytes += nbytes
        self._maybe_flush()

    def stored(self, digest: str) -> None:
        self._add("stored", (digest,))

    def failed(self, *args: Any) -> None:
        self._add("failed", args)

    def blob_failed(self, *args: Any) -> None:
        self._add("blob_failed", args)

    def took(self, batch: int) -> None:
        """This worker took that batch of the schedule: its files are this worker's to report."""
        self._add("took", (batch,))

    def _add(self, name: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self._events.append((name, args))
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_EVERY:
            self.flush()

    def flush(self, last: tuple[str, tuple[Any, ...]] | None = None) -> None:
        """Send what is pending (and ``last``, the worker's final word)."""
        with self._lock:
            events, self._events = self._events, []
            if self._bytes:
                events.insert(0, ("advance", (self._bytes,)))
                self._bytes = 0
            if last is not None:
                events.append(last)
            self._last_flush = time.monotonic()
            if not events or self.broken:
                return
            payload = pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                _write_all(self.fd, _HEADER.pack(len(payload)) + payload)
            except OSError:  # EPIPE: the parent is gone
                self.broken = True
        if self.broken:
            self.on_broken()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_pipe: EventPipe | None = None


def pipe() -> EventPipe:
    """This worker's pipe to its parent (only inside a function ``start`` runs)."""
    assert _pipe is not None, "not in a worker process"
    return _pipe


def _child(work: Callable[[], None], fd: int, lifeline: int) -> None:
    """The body of a forked worker; never returns."""
    global _pipe
    status = EXIT_CRASHED
    try:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
            signal.signal(signal.SIGTERM, _stop_requested)
            _die_with_parent(lifeline)
            _pipe = EventPipe(fd)
            try:
                work()
            except KeyboardInterrupt:  # SIGTERM: from the parent, or the kernel when the parent died
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                _join_others(timeout=5.0)  # their last events (their files failed, as interrupted) go too
                _pipe.flush(("interrupted", ()))
                status = EXIT_INTERRUPTED
            else:
                _pipe.flush(("done", ()))
                status = EXIT_DONE
        except BaseException:  # noqa: BLE001 - a bug: the parent raises it with this traceback
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if _pipe is not None:
                import traceback  # a crash only: its import would cost every sync 1-3 ms

                _pipe.flush(("crash", (traceback.format_exc(),)))
    finally:
        os._exit(status)


def _stop_requested(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the wind-down is not interrupted again
    raise KeyboardInterrupt


def _die_with_parent(lifeline: int) -> None:
    """SIGTERM to this worker when the parent dies, even by ``kill -9``: no orphan
    keeps downloading.

    ``lifeline`` is the read end of a pipe whose only write end the parent holds:
    the kernel closes it when the parent dies, and the read below then returns.
    (Not prctl(PR_SET_PDEATHSIG): reaching it needs ctypes, whose import cost
    each worker 10-15 ms of a sync that lasts half a second.)"""

    def watch() -> None:
        try:
            while os.read(lifeline, 1):  # nothing is ever written: only the end counts
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="modelsync-lifeline", daemon=True).start()


def _join_others(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


# --------------------------------------------------------------------------
# In the parent


class Worker:
    """A forked worker as its parent sees it."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd  # the read end of its pipe
        self.buffer = bytearray()
        self.last: str | None = None  # its final word: "done", "interrupted", "crash"; None: it died first
        self.crash = ""  # the traceback of a crash
        self.status: int | None = None  # as os.waitstatus_to_exitcode gives it (negative: killed by that signal)
        self.batches: list[int] = []  # the schedule's batches it took

    def failure(self) -> Exception:
        """What happened to the files this worker did not report on."""
        hint = "run it again: what was downloaded is kept and resumes"
        if self.last == "interrupted":
            return Interrupted("interrupted", hint=hint)
        if self.status is not None and self.status < 0:
            how = f"was killed by {signal.Signals(-self.status).name}"
        else:
            how = f"exited with status {self.status}"
        return OperationalError(f"a download worker process (pid {self.pid}) {how} before it finished this file", hint=hint)

    def events(self, data: bytes) -> list[tuple[str, tuple[Any, ...]]]:
        """The complete events in what was read so far."""
        self.buffer += data
        events: list[tuple[str, tuple[Any, ...]]] = []
        while len(self.buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + length:
                break
            events += pickle.loads(self.buffer[_HEADER.size : _HEADER.size + length])
            del self.buffer[: _HEADER.size + length]
        return events


def start(works: Sequence[Callable[[], None]]) -> list[Worker]:
    """Fork one worker per function; each runs it and exits."""
    running: list[Worker] = []
    if not works:
        return running
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # or the children would print the parent's buffered output again
    global _lifeline
    # The parent holds the lifeline's write end for as long as it lives (never
    # written, closed by the kernel at its death); each worker watches the read end.
    lifeline, _lifeline = os.pipe()
    # What the parent built (the lock, the plan) is never collected in a worker:
    # frozen, the worker's collections skip it instead of walking every object
    # of a 2000-model plan (and copying each page they touch) now and then.
    gc.freeze()
    try:
        for work in works:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                for inherited in [read_end, _lifeline, *(other.fd for other in running)]:
                    os.close(inherited)
                _child(work, write_end, lifeline)
            os.close(write_end)
            running.append(Worker(pid, read_end))
    finally:
        gc.unfreeze()
        os.close(lifeline)
    return running


# The write end of the workers' lifeline while this process has workers (``start``).
_lifeline: int | None = None


def _cut_lifeline() -> None:
    global _lifeline
    if _lifeline is not None:
        os.close(_lifeline)
        _lifeline = None


def wait(running: list[Worker], apply: Callable[[str, tuple[Any, ...]], None], cancel: threading.Event) -> None:
    """Apply the workers' events until all have exited.

    Ctrl-C here (or ``cancel``) stops them: they get SIGTERM, their last events
    are applied, and KeyboardInterrupt (or nothing, for ``cancel``) follows. A
    crashed worker raises RuntimeError with its traceback, once all have exited."""
    try:
        try:
            _pump(running, apply, cancel, deadline=None)
        except KeyboardInterrupt:
            _stop(running, apply)
            raise
        if cancel.is_set():
            _stop(running, apply)
        for worker in running:
            if worker.status is None:
                _, status = os.waitpid(worker.pid, 0)
                worker.status = os.waitstatus_to_exitcode(status)
    finally:
        _cut_lifeline()  # all reaped; or this process gives up on them, and they stop
    crashed = [worker for worker in running if worker.last == "crash"]
    if crashed:
        raise RuntimeError(f"a download worker process failed:\n{crashed[0].crash}")


def _stop(running: list[Worker], apply: Callable[[str, tuple[Any, ...]], None]) -> None:
    """SIGTERM to every worker, then their last events; SIGKILL for any that
    is still there after STOP_GRACE or a second Ctrl-C."""
    for worker in running:
        _signal(worker, signal.SIGTERM)
    try:
        _pump(running, apply, threading.Event(), deadline=time.monotonic() + STOP_GRACE)
    except KeyboardInterrupt:
        pass
    for worker in running:
        if worker.fd >= 0:  # still talking after the grace time, or a second Ctrl-C came
            _signal(worker, signal.SIGKILL)
            os.close(worker.fd)
            worker.fd = -1
        if worker.status is None:
            _, status = os.waitpid(worker.pid, 0)
            worker.status = os.waitstatus_to_exitcode(status)


def _signal(worker: Worker, signum: int) -> None:
    if worker.status is None:
        try:
            os.kill(worker.pid, signum)
        except ProcessLookupError:
            pass


def _pump(running: list[Worker], apply: Callable[[str, tuple[Any, ...]], None], cancel: threading.Event, *, deadline: float | None) -> None:
    """Read and apply events until every pipe is closed (the workers exited),
    ``cancel`` is set, or ``deadline`` passes."""
    import selectors

    with selectors.DefaultSelector() as selector:
        for worker in running:
            if worker.fd >= 0:
                selector.register(worker.fd, selectors.EVENT_READ, worker)
        while selector.get_map():
            if cancel.is_set() or (deadline is not None and time.monotonic() >= deadline):
                return
            for key, _ in selector.select(0.1):
                worker = key.data
                data = os.read(worker.fd, 1 << 20)
                if not data:  # end of pipe: the worker has exited (or is about to)
                    selector.unregister(worker.fd)
                    os.close(worker.fd)
                    worker.fd = -1
                    continue
                for name, args in worker.events(data):
                    if name in ("done", "interrupted", "crash"):
                        worker.last = name
                        worker.crash = args[0] if args else ""
                    elif name == "took":
                        worker.batches.append(args[0])
                    else:
                        apply(name, args)
