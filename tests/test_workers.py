"""Worker processes: a sync of many small files split over forked processes.

What a user sees: the same files, verified, the same messages and exit codes as
a sync in threads; a worker that dies fails only its unfinished files, with the
reason; Ctrl-C stops everything (130) and kills no parent's children by
surprise; a killed parent leaves no worker running.

The syncs run as subprocesses (``cli``, ``spawn``): the CLI only forks when it
owns a process with no other thread, and pytest's has the servers' threads.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from faultserver import stall_after, status
from helpers import assert_clean_failure, eventually, payload

from modelsync import errors, workers

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="worker processes are forked on Linux only")

FILES = 96  # enough for three workers (workers.FILES_PER_PROCESS each)
SIZE = 4096


@pytest.fixture
def many(fault_server, project, run, monkeypatch, tmp_path):
    """A locked project of FILES url models m00…; the syncs get an empty cache."""
    data = {f"m{i:02}": payload(f"small-{i}", SIZE) for i in range(FILES)}
    manifest = "".join(f'[models.{name}]\nurl = "{fault_server.add(f"f/{name}.bin", body)}"\n\n' for name, body in data.items())
    root = project(manifest)
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    fault_server.clear_log()
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(tmp_path / "sync-cache"))
    monkeypatch.setenv("MODELSYNC_HTTP_BACKOFF", "0.01")
    return SimpleNamespace(root=root, data=data)


def synced(root: Path, data: dict[str, bytes]) -> dict[str, bool]:
    """For each model: is its file in the view, with exactly its bytes?"""
    out = {}
    for name, body in data.items():
        target = root / "models" / name / f"{name}.bin"
        out[name] = target.is_file() and target.read_bytes() == body
    return out


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def throttle_all(fault_server, data: dict[str, bytes], rate: int | None) -> None:
    for name in data:
        fault_server.throttle(f"f/{name}.bin", rate)


def started_workers(proc, fault_server, count: int) -> list[int]:
    """Wait until ``proc`` has ``count`` workers and they have asked for files; their pids.
    (A stalled worker has asked for one: the others of its pipelined stream wait
    unread behind it, in the server's socket.)"""
    pids: list[int] = []

    def ready() -> bool:
        if not proc.running():
            pytest.fail(f"sync ended (code {proc.popen.returncode}) early; stderr:\n{proc.stderr()}")
        pids[:] = children(proc.popen.pid)
        return len(pids) == count and len([r for r in fault_server.requests if r.method == "GET"]) >= count

    eventually(ready, 30, f"{count} workers downloading")
    return pids


# --------------------------------------------------------------------------
# the whole path, as a user runs it


def test_many_small_files_are_fetched_by_worker_processes(many, fault_server, cli):
    result = cli("sync", "--json", cwd=many.root, env={"MODELSYNC_PROCESSES": "3"})

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["workers"] == 3
    assert report["fetched_bytes"] == FILES * SIZE
    assert all(synced(many.root, many.data).values())
    gets = [r.path for r in fault_server.requests if r.method == "GET"]
    assert sorted(gets) == sorted(f"/f/{name}.bin" for name in many.data)  # each file once
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert sorted(e["model"] for e in events if e["event"] == "file") == sorted(many.data)  # every file reported once
    assert [e for e in events if e["event"] == "finish"][0]["done_bytes"] == FILES * SIZE

    again = cli("sync", "--json", cwd=many.root)  # the state was written: nothing left to do
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["fetch"] == []


def test_workers_are_the_default_for_many_small_files(many, cli):
    result = cli("sync", "--json", cwd=many.root)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["workers"] >= 2  # min(4, cores + 1, jobs, files // 32)
    assert all(synced(many.root, many.data).values())


def test_processes_1_keeps_the_sync_in_threads(many, cli):
    result = cli("sync", "--json", cwd=many.root, env={"MODELSYNC_PROCESSES": "1"})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["workers"] == 1
    assert all(synced(many.root, many.data).values())


def test_a_failing_file_in_a_worker_fails_only_itself(many, fault_server, cli):
    fault_server.always("f/m42.bin", status(404))

    result = cli("sync", cwd=many.root, env={"MODELSYNC_PROCESSES": "3"})

    assert_clean_failure(result, 1)
    assert "m42" in result.stderr and "404" in result.stderr, result.stderr
    ok = synced(many.root, many.data)
    assert [name for name, good in ok.items() if not good] == ["m42"]

    fault_server.always("f/m42.bin", None)
    since = fault_server.mark()
    again = cli("sync", cwd=many.root)
    assert again.returncode == 0, again.stderr
    assert [r.path for r in fault_server.requests[since:] if r.method == "GET"] == ["/f/m42.bin"]  # the rest was kept
    assert all(synced(many.root, many.data).values())


def test_a_view_file_that_cannot_be_placed_fails_alone_and_its_download_is_kept(many, fault_server, cli):
    # The workers fill the store; the view files are placed by the parent as each
    # blob is reported. A file where m07's folder should be blocks only m07.
    blocker = many.root / "models" / "m07"
    blocker.parent.mkdir()
    blocker.write_text("not a folder")

    result = cli("sync", "--json", cwd=many.root, env={"MODELSYNC_PROCESSES": "3"})

    assert_clean_failure(result, 1)
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    failed = [event for event in events if event["event"] == "file-failed"]
    assert [(event["model"], event["path"]) for event in failed] == [("m07", "m07.bin")], result.stderr
    assert [e for e in events if e["event"] == "finish"][0]["done_bytes"] == FILES * SIZE  # its blob came all the same
    assert [name for name, good in synced(many.root, many.data).items() if not good] == ["m07"]
    assert blocker.read_text() == "not a folder"  # nothing of the user's is overwritten

    blocker.unlink()
    since = fault_server.mark()
    again = cli("sync", cwd=many.root, env={"MODELSYNC_PROCESSES": "3"})
    assert again.returncode == 0, again.stderr
    assert [r for r in fault_server.requests[since:] if r.method == "GET"] == []  # placed from the cache
    assert all(synced(many.root, many.data).values())


def test_a_killed_worker_fails_its_unfinished_files_with_the_reason(many, fault_server, spawn, cli):
    throttle_all(fault_server, many.data, 16 << 10)  # ~0.25 s a file: a few seconds in all
    proc = spawn("sync", cwd=many.root, env={"MODELSYNC_PROCESSES": "3"})
    victim = started_workers(proc, fault_server, 3)[0]

    os.kill(victim, signal.SIGKILL)
    result = proc.finish(60)

    assert result.returncode == 1, result.stderr
    assert f"(pid {victim}) was killed by SIGKILL" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    ok = synced(many.root, many.data)
    assert 0 < sum(ok.values()) < FILES  # the other workers finished theirs
    throttle_all(fault_server, many.data, None)
    again = cli("sync", cwd=many.root)
    assert again.returncode == 0, again.stderr
    assert all(synced(many.root, many.data).values())


def test_ctrl_c_stops_the_workers_and_exits_130(many, fault_server, spawn, cli):
    throttle_all(fault_server, many.data, 4 << 10)  # ~1 s a file: still running when interrupted
    proc = spawn("sync", cwd=many.root, env={"MODELSYNC_PROCESSES": "3"})
    pids = started_workers(proc, fault_server, 3)

    for pid in [proc.popen.pid, *pids]:  # as a terminal does: the whole foreground group
        os.kill(pid, signal.SIGINT)
    result = proc.finish(15)

    assert result.returncode == 130, result.stderr
    assert "interrupted" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(alive(pid) for pid in pids)
    assert not all(synced(many.root, many.data).values())
    throttle_all(fault_server, many.data, None)
    again = cli("sync", cwd=many.root)
    assert again.returncode == 0, again.stderr
    assert all(synced(many.root, many.data).values())


def test_workers_stop_when_their_parent_is_killed(many, fault_server, spawn):
    for name in many.data:  # silent servers: the workers send no event that could find the parent gone
        fault_server.always(f"f/{name}.bin", stall_after(0, 60))
    proc = spawn("sync", cwd=many.root, env={"MODELSYNC_PROCESSES": "3", "MODELSYNC_HTTP_TIMEOUT": "60"})
    pids = started_workers(proc, fault_server, 3)

    proc.signal(signal.SIGKILL)
    proc.popen.wait(10)

    eventually(lambda: not any(alive(pid) for pid in pids), 10, "the orphaned workers to exit")


def test_bad_processes_value_is_a_usage_error(many, run):
    result = run("sync", cwd=many.root, env={"MODELSYNC_PROCESSES": "0"})

    assert result.returncode == 2
    assert "MODELSYNC_PROCESSES" in result.stderr and "'0'" in result.stderr, result.stderr
    assert not (many.root / "models" / "m00").exists()


# --------------------------------------------------------------------------
# the module: when to fork, how to share, what comes back


def task(size: int, name: str = "x") -> tuple[str, list[SimpleNamespace]]:
    return ("url", [SimpleNamespace(model=name, file=SimpleNamespace(size=size))])


@pytest.fixture
def single_thread(monkeypatch):
    """As in the CLI: no other thread (pytest's servers may have some)."""
    monkeypatch.setattr(workers.threading, "active_count", lambda: 1)


def test_the_schedule_cuts_shrinking_batches_largest_first_and_shares_the_connections(single_thread, monkeypatch):
    monkeypatch.setenv("MODELSYNC_PROCESSES", "3")
    tasks = [task(1024, f"s{i}") for i in range(150)] + [task(1 << 20, f"big{i}") for i in range(3)] + [task(1024, f"t{i}") for i in range(147)]

    schedule = workers.schedule(tasks, jobs=8)

    assert schedule is not None
    assert schedule.jobs == [3, 3, 2]
    flat = [t for batch in schedule.batches for t in batch]
    assert sorted(map(id, flat)) == sorted(map(id, tasks))  # every task once
    assert [items[0].model for _, items in flat[:3]] == ["big0", "big1", "big2"]  # the largest first...
    assert [items[0].model for _, items in flat[3:]] == [f"s{i}" for i in range(150)] + [f"t{i}" for i in range(147)]  # ...then the plan's order
    sizes = [len(batch) for batch in schedule.batches]
    assert sizes[0] == 300 // 6  # a sixth of what is left: 1 / (2 × processes)
    assert sizes == sorted(sizes, reverse=True)  # shrinking as the work runs out...
    assert all(size >= workers.MIN_BATCH for size in sizes[:-1]) and sizes[-1] <= workers.MIN_BATCH  # ...to small ones


def test_a_schedule_of_many_tasks_has_no_more_batches_than_a_pipe_holds(single_thread, monkeypatch):
    monkeypatch.setenv("MODELSYNC_PROCESSES", "4")
    schedule = workers.schedule([task(10) for _ in range(200_000)], jobs=8)

    assert schedule is not None
    assert len(schedule.batches) * 4 <= 4096  # PIPE_BUF: filled before any worker reads
    assert sum(map(len, schedule.batches)) == 200_000


def test_each_batch_is_taken_by_exactly_one_process(single_thread, monkeypatch):
    monkeypatch.setenv("MODELSYNC_PROCESSES", "3")
    schedule = workers.schedule([task(10, f"s{i}") for i in range(3000)], jobs=8)
    assert schedule is not None
    schedule.open()
    go, start = os.pipe()  # closed once all three exist: then they start together
    results = []
    for _ in range(3):  # three processes drain one pipe, as the workers do
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            os.close(start)
            os.read(go, 1)
            taken = []
            while (batch := schedule.take()) is not None:
                taken.append(batch)
                time.sleep(0.001)  # each takes a turn
            os.write(write_end, pickle.dumps(taken))
            os._exit(0)
        os.close(write_end)
        results.append((pid, read_end))
    os.close(go)
    os.close(start)
    schedule.close()
    taken_by = []
    for pid, read_end in results:
        with os.fdopen(read_end, "rb") as handle:
            taken_by.append(pickle.loads(handle.read()))
        os.waitpid(pid, 0)

    assert sorted(b for taken in taken_by for b in taken) == list(range(len(schedule.batches)))  # each once
    assert all(taken for taken in taken_by)  # and every process got some


@pytest.mark.parametrize(
    "why, setup",
    [
        ("few files", lambda mp: None),
        ("another thread runs", lambda mp: mp.setattr(workers.threading, "active_count", lambda: 2)),
        ("not Linux", lambda mp: mp.setattr(workers.sys, "platform", "darwin")),
        ("MODELSYNC_PROCESSES=1", lambda mp: mp.setenv("MODELSYNC_PROCESSES", "1")),
        ("a file to split into parts", lambda mp: mp.setenv("MODELSYNC_SPLIT_SIZE", "4096")),
    ],
)
def test_no_workers_where_they_do_not_pay_or_are_unsafe(single_thread, monkeypatch, why, setup):
    tasks = [task(4096, f"s{i}") for i in range(20 if why == "few files" else 200)]
    setup(monkeypatch)
    assert workers.schedule(tasks, jobs=8) is None, why


def test_default_count_follows_files_cores_and_jobs(single_thread, monkeypatch):
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 2)
    assert workers.count(2000, 8, largest=1) == 3  # cores + 1
    assert workers.count(70, 8, largest=1) == 2  # 32 files each at least
    assert workers.count(2000, 2, largest=1) == 2  # one connection each at least
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 64)
    assert workers.count(2000, 8, largest=1) == workers.MAX_PROCESSES


def _send_events() -> None:
    pipe = workers.pipe()
    pipe.advance(10)
    pipe.stored("a" * 64)
    pipe.advance(5)
    pipe.failed("m", "b.bin", errors.ManifestError("bad", file="models.toml", line=3, key="models.m"))
    pipe.blob_failed("d" * 64)


def _crash() -> None:
    raise ValueError("a bug in the worker")


def _exit_3() -> None:
    os._exit(3)


def _killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wait(works) -> tuple[list[workers.Worker], list[tuple[str, tuple]]]:
    applied: list[tuple[str, tuple]] = []
    running = workers.start(works)
    workers.wait(running, lambda name, args: applied.append((name, args)), threading.Event())
    return running, applied


def test_worker_events_reach_the_parent_in_order():
    running, applied = _wait([_send_events])

    assert [name for name, _ in applied] == ["advance", "stored", "failed", "blob_failed"]
    assert applied[0] == ("advance", (15,))  # bytes are summed into one event per batch
    failure = applied[2][1][2]
    assert isinstance(failure, errors.ManifestError)
    assert (failure.file, failure.line, failure.key) == ("models.toml", 3, "models.m")
    assert running[0].last == "done" and running[0].status == 0


def test_a_bug_in_a_worker_is_raised_in_the_parent_with_its_traceback():
    with pytest.raises(RuntimeError, match="a download worker process failed") as raised:
        _wait([_crash, _send_events])
    assert "ValueError: a bug in the worker" in str(raised.value)
    assert "_crash" in str(raised.value)  # the worker's traceback, not the parent's


@pytest.mark.parametrize("work, reason", [(_exit_3, "exited with status 3"), (_killed, "was killed by SIGKILL")])
def test_a_worker_that_dies_gives_the_reason_for_its_files(work, reason):
    running, applied = _wait([work])

    assert applied == []
    failure = running[0].failure()
    assert isinstance(failure, errors.OperationalError)
    assert f"(pid {running[0].pid}) {reason}" in failure.message
    assert "run it again" in failure.hint


def test_cancel_stops_the_workers_and_keeps_their_last_events():
    def slow() -> None:
        workers.pipe().advance(1)
        time.sleep(30)

    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    applied: list[tuple[str, tuple]] = []
    started = time.monotonic()
    running = workers.start([slow, slow])
    workers.wait(running, lambda name, args: applied.append((name, args)), cancel)

    assert time.monotonic() - started < workers.STOP_GRACE
    assert [worker.last for worker in running] == ["interrupted", "interrupted"]
    assert all(isinstance(worker.failure(), errors.Interrupted) for worker in running)
    assert sum(args[0] for name, args in applied if name == "advance") == 2


# --------------------------------------------------------------------------
# failures cross the pipe as they are


@pytest.mark.parametrize(
    "error",
    [
        errors.ManifestError("bad key", file="models.toml", line=7, key="models.x.url", hint="fix it"),
        errors.LockfileError("broken", file="models.lock", key="model[x]"),
        errors.OperationalError("network down", hint="retry"),
        errors.Interrupted("interrupted"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling(error):
    again = pickle.loads(pickle.dumps(error))

    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.__dict__ == error.__dict__
    assert again.exit_code == error.exit_code
