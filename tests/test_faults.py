"""The transfer engine against a server that misbehaves: what a user sees.

Each test locks a project against the fault server with no fault (``modelsync lock``
puts the bytes into the cache, so the sync then uses a fresh, empty cache), programs
faults, runs ``modelsync sync`` and checks the exit code, the file's exact bytes, the
messages, and the server's own record of what it was asked and what it sent.

Most syncs run in this process (``run``, fast). Subprocesses: ``cli`` where a failure's
stderr is read (it then holds modelsync's output only), ``spawn`` for syncs that get
killed, stopped, interrupted or run side by side, and for those that must end in time.

Every sync here retries after 10 ms (MODELSYNC_HTTP_BACKOFF=0.01) to keep the file fast.
"""

from __future__ import annotations

import functools
import itertools
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Proc
from faultserver import (
    FaultServer,
    corrupt,
    drop_after,
    encoding,
    gzip,
    ignore_range,
    longer,
    stall_after,
    status,
)
from helpers import assert_clean_failure, b3, eventually, files_under
from helpers import payload as _payload

MiB = 1 << 20
PATH = "files/model.bin"
SPLIT = {"MODELSYNC_SPLIT_SIZE": str(MiB)}
# A resume may ask again for what the last read of the broken connection held but had not
# written yet (an HTTP library's read buffer): at most this much per break.
RESUME_SLACK = 256 << 10


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry at once (10 ms backoff), for every sync of this file, in-process or not."""
    monkeypatch.setenv("MODELSYNC_HTTP_BACKOFF", "0.01")


# --------------------------------------------------------------------------
# helpers


@functools.cache
def payload(seed: str, size: int) -> bytes:
    return _payload(seed, size)


@dataclass
class Setup:
    root: Path  # the project
    cache: Path  # the (empty) cache the syncs use
    data: bytes
    path: str = PATH
    model: str = "m"

    @property
    def target(self) -> Path:
        return self.root / "models" / self.model / Path(self.path).name


def declare(server: FaultServer, project: Callable[..., Path], files: dict[str, tuple[str, bytes]], folder: str = "app") -> Path:
    """A project with one url model per entry: model name -> (server path, bytes)."""
    manifest = ""
    for model, (path, data) in files.items():
        manifest += f'[models.{model}]\nurl = "{server.add(path, data)}"\n\n'
    return project(manifest, folder)


def lock(run, root: Path) -> None:
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr


def fresh_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str = "sync-cache") -> Path:
    """An empty cache for the syncs (and their subprocesses) from now on."""
    cache = tmp_path / name
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def setup(fault_server, project, run, monkeypatch, tmp_path):
    """One model `m` serving ``data`` at PATH, locked; the syncs get an empty cache."""

    def make(data: bytes) -> Setup:
        root = declare(fault_server, project, {"m": (PATH, data)})
        lock(run, root)
        fault_server.clear_log()
        return Setup(root, fresh_cache(monkeypatch, tmp_path), data)

    return make


def blobs(cache: Path) -> list[Path]:
    return files_under(cache / "blobs")


def big_files_outside_tmp(folder: Path, size: int) -> list[Path]:
    """Files of at least half ``size`` outside ``tmp/``: where a kept copy of the bytes would be."""
    return [p for p in files_under(folder) if "tmp" not in p.relative_to(folder).parts[:1] and p.stat().st_size >= size // 2]


def range_start(request) -> int | None:
    value = request.range
    if not value or not value.startswith("bytes="):
        return None
    first = value[len("bytes=") :].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def assert_resumes(broken, retry) -> None:
    """``retry`` asks for the rest of what ``broken`` sent: not from its start, not past its end."""
    received = broken.offset + broken.sent
    start = range_start(retry)
    assert start is not None and broken.offset < start <= received and start >= received - RESUME_SLACK, (
        f"after {received} bytes ({broken.range or 'no Range'} broke), the retry asked {retry.range!r}"
    )


def wait_for_bytes(server: FaultServer, path: str, since: int, nbytes: int, proc: Proc, timeout: float = 30) -> None:
    """Until the server has sent ``nbytes`` of ``path`` to ``proc``, which must still be running."""

    def reached() -> bool:
        if not proc.running():
            pytest.fail(f"sync ended (code {proc.popen.returncode}) before {nbytes} bytes were sent; stderr:\n{proc.stderr()}")
        return server.served(path, since) >= nbytes

    eventually(reached, timeout, f"{nbytes} bytes of {path} to be sent")


def settle(server: FaultServer, path: str, since: int) -> None:
    """Until no answer for ``path`` is being written any more (after its client died)."""
    eventually(lambda: not server.busy(path, since), 10, f"the server to stop sending {path}")


def assert_covers_once(requests, size: int) -> None:
    """The bytes sent by ``requests`` are exactly [0, size), each byte once."""
    spans = sorted((r.offset, r.offset + r.sent) for r in requests if r.sent)
    position = 0
    for start, end in spans:
        assert start == position, f"bytes sent: {spans}: gap or overlap at {position}"
        position = end
    assert position == size, f"bytes sent: {spans}, file size {size}"


# --------------------------------------------------------------------------
# 1. a connection dropped mid-body is resumed where it broke


@pytest.mark.parametrize("drops", [[700_000], [300_000, 900_000]], ids=["once", "twice"])
def test_dropped_connection_resumes_with_range_from_the_bytes_received(fault_server, setup, run, drops):
    s = setup(payload("drop", 3 * MiB))
    fault_server.fault(PATH, *[drop_after(n) for n in drops])

    result = run("sync", cwd=s.root)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    gets = fault_server.gets(PATH)
    assert len(gets) == len(drops) + 1
    for dropped, retry in itertools.pairwise(gets):
        assert_resumes(dropped, retry)
    assert gets[-1].status == 206
    # each byte sent about once, not the file twice
    assert len(s.data) <= fault_server.served(PATH) <= len(s.data) + len(drops) * RESUME_SLACK


# --------------------------------------------------------------------------
# 2. server errors are retried; retries are bounded in number and in time


@pytest.mark.parametrize("code", [500, 502, 503])
def test_server_errors_a_few_times_then_ok(fault_server, setup, run, code):
    s = setup(payload("5xx", 256 << 10))
    fault_server.fault(PATH, status(code), status(code), status(code))

    result = run("sync", cwd=s.root)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    assert [r.status for r in fault_server.gets(PATH)] == [code, code, code, 200]


def test_always_503_gives_up_after_the_configured_attempts(fault_server, setup, cli):
    s = setup(payload("503", 256 << 10))
    fault_server.always(PATH, status(503))

    result = cli("sync", cwd=s.root, env={"MODELSYNC_HTTP_RETRIES": "3"}, timeout=60)

    assert_clean_failure(result, 1)
    assert len(fault_server.gets(PATH)) == 3
    assert re.search(r"after 3 attempt", result.stderr), result.stderr  # "3 attempts", "3 attempt(s)"
    assert fault_server.url(PATH) in result.stderr or "m/model.bin" in result.stderr, result.stderr
    assert "503" in result.stderr
    assert not s.target.exists()
    assert blobs(s.cache) == []


def test_retries_stop_after_the_retry_time_limit(fault_server, setup, spawn):
    s = setup(payload("limit", 256 << 10))
    fault_server.always(PATH, status(503))
    env = {"MODELSYNC_HTTP_RETRIES": "1000", "MODELSYNC_HTTP_RETRY_MAX_TIME": "2"}

    result = spawn("sync", cwd=s.root, env=env).finish(15)  # fails the test if it keeps retrying

    assert_clean_failure(result, 1)
    gets = fault_server.gets(PATH)
    # it kept retrying (more than the default 5 attempts: 10 ms backoff, doubling) until the time ran out
    assert 5 < len(gets) < 1000, len(gets)
    assert fault_server.url(PATH) in result.stderr or "m/model.bin" in result.stderr, result.stderr


# --------------------------------------------------------------------------
# 3. 429 Too Many Requests: Retry-After is honoured


def test_429_waits_for_retry_after(fault_server, setup, run):
    s = setup(payload("429", 256 << 10))
    fault_server.fault(PATH, status(429, {"Retry-After": "1"}))

    result = run("sync", cwd=s.root)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    first, second = fault_server.gets(PATH)
    assert first.status == 429 and second.status == 200
    assert second.started - first.started >= 0.9, "the retry came before Retry-After: 1 ran out"


# --------------------------------------------------------------------------
# 4. a stalled read is detected by the stall timeout and resumed


def test_stalled_read_is_abandoned_and_resumed(fault_server, setup, run):
    s = setup(payload("stall", 2 * MiB))
    fault_server.fault(PATH, stall_after(600_000, 5))

    result = run("sync", cwd=s.root, env={"MODELSYNC_HTTP_TIMEOUT": "1"})

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    stalled, retry = fault_server.gets(PATH)
    # the client gave up on the silent connection itself, before the server closed it
    assert stalled.ended is None or retry.started < stalled.ended
    assert_resumes(stalled, retry)
    assert fault_server.served(PATH) <= len(s.data) + RESUME_SLACK


# --------------------------------------------------------------------------
# 5. a server that ignores Range on the resume: the whole file again, never mixed


def test_range_ignored_on_resume_gives_the_right_bytes(fault_server, setup, run):
    s = setup(payload("norange", 2 * MiB))
    fault_server.fault(PATH, drop_after(1_000_000), ignore_range())

    result = run("sync", cwd=s.root)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    dropped, retry = fault_server.gets(PATH)
    assert_resumes(dropped, retry)  # it asked for the rest …
    assert retry.status == 200 and retry.sent == len(s.data)  # … and got the whole file
    assert [b.read_bytes() for b in blobs(s.cache)] == [s.data]


# --------------------------------------------------------------------------
# 6. Content-Encoding the client did not ask for


def test_gzip_encoded_body_is_decoded(fault_server, setup, run):
    s = setup(payload("gz", 16 << 10) * 64)  # compressible: the gzip body is much smaller
    fault_server.always(PATH, gzip())

    result = run("sync", cwd=s.root)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    assert all(r.fault == "encoding" for r in fault_server.gets(PATH))


def test_undecodable_encoding_fails_naming_it(fault_server, setup, cli):
    s = setup(payload("br", 256 << 10))
    fault_server.always(PATH, encoding("br"))

    result = cli("sync", cwd=s.root, timeout=60)

    assert_clean_failure(result, 1)
    assert "encoding" in result.stderr.lower(), result.stderr
    assert re.search(r"(?<![\w-])br(?![\w-])", result.stderr), result.stderr  # names it
    assert not s.target.exists()
    assert blobs(s.cache) == []


# --------------------------------------------------------------------------
# 7. a body longer than the locked size


def test_body_longer_than_locked_size_fails_and_keeps_nothing(fault_server, setup, cli):
    s = setup(payload("long", 512 << 10))
    fault_server.always(PATH, longer(1000))

    result = cli("sync", cwd=s.root, timeout=60)

    assert_clean_failure(result, 1)
    assert "size" in result.stderr and str(len(s.data)) in result.stderr, result.stderr
    assert not s.target.exists()
    assert blobs(s.cache) == []
    assert big_files_outside_tmp(s.cache, len(s.data)) == []


# --------------------------------------------------------------------------
# 8. corrupt bytes: one full re-download, then a clear failure


def test_corrupt_once_is_downloaded_again_in_full(fault_server, setup, run):
    s = setup(payload("corrupt1", MiB))
    fault_server.fault(PATH, corrupt())

    result = run("sync", cwd=s.root)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    gets = fault_server.gets(PATH)
    assert [(r.status, r.range, r.sent) for r in gets] == [(200, None, len(s.data))] * 2


def test_corrupt_every_time_fails_with_both_digests_after_two_attempts(fault_server, setup, cli):
    s = setup(payload("corrupt2", MiB))
    fault_server.always(PATH, corrupt())
    bad = bytearray(s.data)
    bad[len(bad) // 2] ^= 0xFF

    result = cli("sync", cwd=s.root, timeout=60)

    assert_clean_failure(result, 1)
    assert b3(s.data) in result.stderr, result.stderr  # expected, from models.lock
    assert b3(bytes(bad)) in result.stderr, result.stderr  # found
    gets = fault_server.gets(PATH)
    assert [(r.status, r.range, r.sent) for r in gets] == [(200, None, len(s.data))] * 2
    assert not s.target.exists()
    assert blobs(s.cache) == []
    assert big_files_outside_tmp(s.cache, len(s.data)) == []
    assert big_files_outside_tmp(s.root, len(s.data)) == []


# --------------------------------------------------------------------------
# 9. a large file comes as parallel Range parts


def test_large_file_is_fetched_as_parallel_parts_covering_it_once(fault_server, setup, run):
    s = setup(payload("split", 8 * MiB))
    fault_server.throttle(PATH, 32 * MiB)  # ~0.25 s: long enough for the parts to overlap

    result = run("sync", cwd=s.root, env={**SPLIT, "MODELSYNC_JOBS": "3"})

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    settle(fault_server, PATH, 0)
    gets = fault_server.gets(PATH)
    assert len(gets) >= 2 and all(r.status == 206 for r in gets), [(r.status, r.range) for r in gets]
    assert_covers_once(gets, len(s.data))
    assert fault_server.served(PATH) == len(s.data)
    # parts ran side by side, and never more of them than MODELSYNC_JOBS connections (the 5 ms
    # forgive a next part asked for while the server was still noting the end of the last one)
    at_once = max(sum(1 for o in gets if o.started <= r.started < o.ended - 0.005) for r in gets)
    assert 2 <= at_once <= 3, at_once


def test_parts_from_a_server_that_ignores_range_still_give_the_right_bytes(fault_server, setup, run):
    s = setup(payload("split-norange", 8 * MiB))
    fault_server.always(PATH, ignore_range())

    result = run("sync", cwd=s.root, env=SPLIT)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    gets = fault_server.gets(PATH)
    assert any(r.range for r in gets), "no part was asked for: the split path was not taken"
    assert all(r.status == 200 for r in gets)
    assert [b.read_bytes() for b in blobs(s.cache)] == [s.data]


# --------------------------------------------------------------------------
# 10. a killed sync is resumed by the next one, with If-Range


def start_and_kill(server: FaultServer, s: Setup, spawn, env: dict[str, str], fraction: float = 0.4) -> int:
    """Start a throttled sync, SIGKILL it once ``fraction`` of the file was sent; the bytes it got."""
    since = server.mark()
    proc = spawn("sync", cwd=s.root, env=env)
    wait_for_bytes(server, s.path, since, int(len(s.data) * fraction), proc)
    proc.signal(signal.SIGKILL)
    proc.popen.wait(10)
    settle(server, s.path, since)
    assert not s.target.exists()
    assert blobs(s.cache) == []
    return server.served(s.path, since)


@pytest.mark.parametrize("env", [{}, SPLIT], ids=["one-stream", "split"])
def test_killed_sync_is_resumed_by_the_next_with_if_range(fault_server, setup, run, spawn, env):
    s = setup(payload("resume", 16 * MiB))
    fault_server.throttle(PATH, 12 * MiB)
    received = start_and_kill(fault_server, s, spawn, env)
    assert received < len(s.data)

    fault_server.throttle(PATH, None)
    since = fault_server.mark()
    result = run("sync", cwd=s.root, env=env)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    again = fault_server.served(PATH, since)
    assert again <= len(s.data) - received + len(s.data) // 10, (again, received)
    gets = fault_server.gets(PATH, since)
    etag = fault_server.etags["/" + PATH]
    assert gets and all(r.header("If-Range") == etag for r in gets), [(r.range, r.header("If-Range")) for r in gets]


@pytest.mark.parametrize("env", [{}, SPLIT], ids=["one-stream", "split"])
def test_changed_etag_between_runs_downloads_the_whole_file_again(fault_server, setup, run, spawn, env):
    s = setup(payload("etag", 16 * MiB))
    fault_server.throttle(PATH, 12 * MiB)
    start_and_kill(fault_server, s, spawn, env)

    fault_server.throttle(PATH, None)
    fault_server.set_etag(PATH, '"a-new-version"')  # same bytes: the server cannot say so
    since = fault_server.mark()
    result = run("sync", cwd=s.root, env=env)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    gets = fault_server.gets(PATH, since)
    assert any(r.header("If-Range") and r.status == 200 for r in gets), [(r.range, r.header("If-Range"), r.status) for r in gets]
    assert fault_server.served(PATH, since) >= len(s.data)


# --------------------------------------------------------------------------
# 11. several processes, one cache: each byte downloaded once


def test_concurrent_syncs_into_one_cache_download_each_file_once(fault_server, project, run, spawn, monkeypatch, tmp_path):
    big, small = payload("shared-big", 6 * MiB), payload("shared-small", 3 * MiB)
    files = {"big": ("files/big.bin", big), "small": ("files/small.bin", small)}
    roots = [declare(fault_server, project, files, folder) for folder in ("app1", "app2")]
    for root in roots:
        lock(run, root)
    fresh_cache(monkeypatch, tmp_path)
    fault_server.clear_log()
    for path, _ in files.values():
        fault_server.throttle(path, 8 * MiB)
    since = fault_server.mark()
    env = {"MODELSYNC_SPLIT_SIZE": str(4 * MiB)}  # big comes in parts, small in one stream

    procs = [spawn("sync", cwd=root, env=env) for root in roots + roots]
    results = [proc.finish(60) for proc in procs]

    for result in results:
        assert result.returncode == 0, result.stderr
    for root in roots:
        assert (root / "models" / "big" / "big.bin").read_bytes() == big
        assert (root / "models" / "small" / "small.bin").read_bytes() == small
    for path, data in files.values():
        assert fault_server.served(path, since) == len(data), path


# --------------------------------------------------------------------------
# 12. the lock of a dead or hung sync does not block the next one


def test_lock_of_a_killed_sync_does_not_block_the_next(fault_server, setup, spawn):
    s = setup(payload("stale", 8 * MiB))
    fault_server.throttle(PATH, 6 * MiB)
    start_and_kill(fault_server, s, spawn, {}, fraction=0.3)
    fault_server.throttle(PATH, None)

    # MODELSYNC_LOCK_TIMEOUT is the default 60 s: the dead owner must be noticed, not waited out
    result = spawn("sync", cwd=s.root).finish(20)

    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    assert [b.read_bytes() for b in blobs(s.cache)] == [s.data]


def test_lock_of_a_hung_sync_is_taken_over_after_the_lock_timeout(fault_server, setup, spawn):
    s = setup(payload("hung", 8 * MiB))
    fault_server.throttle(PATH, 6 * MiB)
    since = fault_server.mark()
    hung = spawn("sync", cwd=s.root)
    try:
        wait_for_bytes(fault_server, PATH, since, int(len(s.data) * 0.3), hung)
        hung.signal(signal.SIGSTOP)
        fault_server.throttle(PATH, None)

        result = spawn("sync", cwd=s.root, env={"MODELSYNC_LOCK_TIMEOUT": "2"}).finish(30)

        assert result.returncode == 0, result.stderr
        assert s.target.read_bytes() == s.data
        assert [b.read_bytes() for b in blobs(s.cache)] == [s.data]
    finally:
        hung.kill()


# --------------------------------------------------------------------------
# 13. Ctrl-C


def test_ctrl_c_exits_130_and_the_next_sync_resumes(fault_server, setup, run, spawn):
    s = setup(payload("sigint", 8 * MiB))
    fault_server.throttle(PATH, 6 * MiB)
    since = fault_server.mark()
    proc = spawn("sync", cwd=s.root)
    wait_for_bytes(fault_server, PATH, since, int(len(s.data) * 0.3), proc)

    proc.signal(signal.SIGINT)
    interrupted = proc.finish(5)

    assert interrupted.returncode == 130, interrupted.stderr
    assert "interrupted" in interrupted.stderr
    assert "Traceback" not in interrupted.stderr
    assert not s.target.exists()

    fault_server.throttle(PATH, None)
    settle(fault_server, PATH, since)
    again = fault_server.mark()
    result = run("sync", cwd=s.root)
    assert result.returncode == 0, result.stderr
    assert s.target.read_bytes() == s.data
    assert fault_server.served(PATH, again) < len(s.data)
