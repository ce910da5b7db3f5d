"""Everything the CLI prints: errors (in one place), progress, sizes.

Data (``path``, ``--json``, the status table) goes to stdout; messages and
progress go to stderr, so ``$(modelsync path vad)`` and pipes stay clean.

rich is imported only when something needs it (a terminal, a table, colour):
a sync in CI or in a script writes plain lines and starts ~80 ms sooner.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .._units import human_size
from ..errors import ModelsyncError

if TYPE_CHECKING:
    from rich.console import Console


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class Output:
    def __init__(self, *, quiet: bool = False, json_mode: bool = False, verbose: bool = False) -> None:
        self.quiet = quiet
        self.json_mode = json_mode
        self.verbose = verbose
        self._lock = threading.Lock()

    @cached_property
    def err(self) -> "Console":
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    @cached_property
    def out(self) -> "Console":
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

    @property
    def on_terminal(self) -> bool:
        return sys.stderr.isatty()

    # -- messages -------------------------------------------------------------

    def info(self, message: str, *, markup: bool = False) -> None:
        """A message on stderr: plain text (names like `vad[fp16]` stay as they are) unless ``markup``."""
        if self.quiet or self.json_mode:
            return
        if markup or self.on_terminal:
            self.err.print(message, markup=markup)
        else:
            with self._lock:  # whole lines, even from worker threads
                sys.stderr.write(message + "\n")
                sys.stderr.flush()

    def warn(self, message: str) -> None:
        if self.json_mode:
            _event("warning", message=message)
        elif not self.quiet:
            self.err.print(f"[yellow]warning:[/] {escape(message)}")

    def data(self, text: str) -> None:
        sys.stdout.write(text + "\n")

    def json(self, payload: Any) -> None:
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    # -- errors: the one place an exception becomes a message and an exit code --

    def error(self, error: BaseException) -> int:
        if isinstance(error, KeyboardInterrupt) and self.json_mode:
            _event("error", message="interrupted", hint="run the command again: what was downloaded is kept and resumes", exit_code=130)
            return 130
        if isinstance(error, KeyboardInterrupt):
            self.err.print("[red]interrupted[/]; files that finished are kept, run the command again for the rest")
            return 130
        if isinstance(error, ModelsyncError) and self.json_mode:
            _event("error", message=error.message, hint=error.hint, exit_code=error.exit_code)
            return error.exit_code
        if isinstance(error, ModelsyncError):
            if self.verbose:
                self.err.print(escape(_traceback(error)), end="")
            self.err.print(f"[bold red]error:[/] {escape(error.message)}")
            if error.hint:
                self.err.print(f"[cyan]hint:[/] {escape(error.hint)}")
            return error.exit_code
        if isinstance(error, OSError):  # the disk, permissions, a file where a folder should be
            from ..engine import as_modelsync_error

            return self.error(as_modelsync_error(error))
        # Not an expected failure: a bug. Show everything so it can be reported.
        self.err.print(escape(_traceback(error)), end="")
        self.err.print("[bold red]error:[/] modelsync crashed; please report this with the traceback above")
        return 1

    # -- progress --------------------------------------------------------------

    def reporter(self, verb: str = "syncing"):  # type: ignore[no-untyped-def]
        from ..engine import NullReporter

        if self.json_mode:
            return JsonReporter()
        if self.quiet:
            return NullReporter()
        if self.on_terminal:
            return RichReporter(self.err, verb)
        return PlainReporter(self, verb)


class RichReporter:
    """One aggregate bar: bytes, rate, ETA, files done/total."""

    def __init__(self, console: "Console", verb: str) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.verb = verb
        self.task = None
        self.console = console
        self._lock = threading.Lock()

    def start(self, total_bytes: int, total_files: int) -> None:
        self.progress.start()
        self._files_done = 0
        self._total_files = total_files
        self.task = self.progress.add_task(f"{self.verb} 0/{total_files}", total=total_bytes or None)

    def advance(self, nbytes: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, nbytes)

    def file_done(self, model: str, path: str, size: int) -> None:
        with self._lock:
            self._files_done += 1
            done = self._files_done
        if self.task is not None:
            self.progress.update(self.task, description=f"{self.verb} {done}/{self._total_files}")

    def file_failed(self, model: str, path: str, error: ModelsyncError) -> None:
        self.console.print(f"[red]failed[/] {escape(model)}/{escape(path)}")

    def finish(self) -> None:
        self.progress.stop()


class PlainReporter:
    """Line per file for logs (CI, pipes): no control characters, no bars; and,
    during a long download, a line every 10 s so a log never looks stuck."""

    EVERY = 10.0

    def __init__(self, output: Output, verb: str) -> None:
        self.output = output
        self.verb = verb
        self._lock = threading.Lock()
        self._bytes = 0
        self._total = 0
        self._started = time.monotonic()
        self._said = self._started

    def start(self, total_bytes: int, total_files: int) -> None:
        self._started = self._said = time.monotonic()
        self._total = total_bytes
        if total_files:
            self.output.info(f"{self.verb} {total_files} file(s), {human_size(total_bytes)} to fetch")

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._bytes += nbytes
            now = time.monotonic()
            if now - self._said < self.EVERY or not self._total:
                return
            self._said = now
            done, elapsed = self._bytes, now - self._started
        percent = 100 * done / self._total
        self.output.info(f"  … {percent:.0f}% ({human_size(done)} of {human_size(self._total)}, {human_size(done / elapsed)}/s)")

    def file_done(self, model: str, path: str, size: int) -> None:
        self.output.info(f"  {model}/{path}  {human_size(size)}")

    def file_failed(self, model: str, path: str, error: ModelsyncError) -> None:
        self.output.info(f"  failed {model}/{path}")

    def finish(self) -> None:
        elapsed = time.monotonic() - self._started
        if self._bytes:
            rate = self._bytes / elapsed if elapsed > 0 else 0
            self.output.info(f"fetched {human_size(self._bytes)} in {elapsed:.1f}s ({human_size(rate)}/s)")


def _event(kind: str, **fields: Any) -> None:
    """One JSON line on stderr: stdout keeps the single result document."""
    sys.stderr.write(json.dumps({"event": kind, **fields}, sort_keys=True) + "\n")
    sys.stderr.flush()


class JsonReporter:
    """``--json``: progress as JSON lines on stderr, for programs that drive modelsync.

    Events: ``start`` (bytes and files to do), ``progress`` (at most 4 a second),
    ``file`` (a file is in place), ``file-failed``, ``finish``; and ``error``
    when the command fails (see Output.error)."""

    EVERY = 0.25

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = 0
        self._files = 0
        self._total_bytes = 0
        self._total_files = 0
        self._started = time.monotonic()
        self._said = 0.0

    def start(self, total_bytes: int, total_files: int) -> None:
        self._total_bytes, self._total_files = total_bytes, total_files
        self._started = time.monotonic()
        _event("start", total_bytes=total_bytes, total_files=total_files)

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._bytes += nbytes
            now = time.monotonic()
            if now - self._said < self.EVERY:
                return
            self._said = now
            self._progress()

    def _progress(self) -> None:
        _event("progress", done_bytes=self._bytes, total_bytes=self._total_bytes, done_files=self._files, total_files=self._total_files)

    def file_done(self, model: str, path: str, size: int) -> None:
        with self._lock:
            self._files += 1
            _event("file", model=model, path=path, size=size)

    def file_failed(self, model: str, path: str, error: ModelsyncError) -> None:
        with self._lock:
            _event("file-failed", model=model, path=path, message=error.message, hint=error.hint)

    def finish(self) -> None:
        with self._lock:
            self._progress()
            _event("finish", done_bytes=self._bytes, done_files=self._files, seconds=round(time.monotonic() - self._started, 3))


def _traceback(error: BaseException) -> str:
    import traceback  # for -v and crashes only: its import would cost every command 1-3 ms

    return "".join(traceback.format_exception(error))
