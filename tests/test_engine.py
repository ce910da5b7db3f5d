"""The sync engine around the network: the no-op path, disk space, the per-blob
claim between processes, resumable partials, and progress for programs.

The network faults themselves (drops, stalls, 5xx, Range, kill -9) are in
test_faults.py, against the fault-injecting server.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import b3, payload

from modelsync import partial as mpartial
from modelsync import syncer
from modelsync.store import Store

MIB = 1 << 20


def locked_project(http_server, project, monkeypatch, tmp_path, files: dict[str, bytes]) -> Path:
    """A project of one url model per file, locked; then an empty cache, as on a new machine."""
    tables = "".join(f'[models.{name}]\nurl = "{http_server.add(f"{name}.bin", data)}"\n\n' for name, data in files.items())
    root = project(tables)
    from modelsync.cli.main import main

    monkeypatch.chdir(root)
    assert main(["lock", "-q"]) == 0
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(tmp_path / "fresh-cache"))
    http_server.requests.clear()
    return root


def served_bytes(http_server, name: str) -> int:
    """Bytes the server was asked for (Range-aware), for GETs of ``name``."""
    total = 0
    size = len(http_server.files[f"/{name}.bin"])
    for request in http_server.requests:
        if request.method != "GET" or request.path != f"/{name}.bin":
            continue
        asked = request.headers.get("Range", "")
        if asked.startswith("bytes="):
            first, _, last = asked[6:].partition("-")
            total += (int(last) + 1 if last else size) - int(first or 0)
        else:
            total += size
    return total


# --------------------------------------------------------------------------
# the no-op sync


def test_noop_sync_reads_no_toml_and_imports_nothing_heavy(http_server, project, cli):
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", payload("a", 5000))}"
    ''')
    assert cli("sync", cwd=root).returncode == 0
    http_server.requests.clear()
    probe = (
        "import sys; from modelsync.cli.main import main; code = main(['sync']);"
        "heavy = sorted(m for m in ('tomllib', 'tomlkit', 'requests', 'rich', 'blake3', 'huggingface_hub', 'modelsync.syncer', 'modelsync.lockfile') if m in sys.modules);"
        "print(code, heavy)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, env={**os.environ})
    assert result.stdout.strip() == "0 []", result.stdout + result.stderr
    assert "1 model(s) up to date" in result.stderr
    assert http_server.requests == []


@pytest.mark.parametrize("change", ["delete", "rewrite", "manifest", "lock-edit"])
def test_noop_check_sees_every_change(http_server, project, run, change):
    a, b = payload("a", 3000), payload("b", 4000)
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", a)}"
    ''')
    assert run("sync", cwd=root).returncode == 0
    view_file = root / "models" / "a" / "a.bin"
    if change == "delete":
        view_file.unlink()
    elif change == "rewrite":  # same size, other bytes: only the stat record tells
        view_file.unlink()
        view_file.write_bytes(bytes(len(a)))
    elif change == "manifest":
        with open(root / "models.toml", "a") as handle:
            handle.write(f'\n[models.b]\nurl = "{http_server.add("b.bin", b)}"\n')
    elif change == "lock-edit":  # a lock written by another tool (or git checkout) is re-read
        lock = root / "models.lock"
        lock.write_text(lock.read_text() + "\n")
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert view_file.read_bytes() == a
    if change == "manifest":
        assert (root / "models" / "b" / "b.bin").read_bytes() == b


def test_noop_check_respects_groups(http_server, project, run):
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", payload("a", 3000))}"
        group = "one"

        [models.b]
        url = "{http_server.add("b.bin", payload("b", 3000))}"
        group = "two"
    ''')
    assert run("sync", "--group", "one", cwd=root).returncode == 0
    assert not (root / "models" / "b").exists()
    assert run("sync", "--group", "two", cwd=root).returncode == 0
    assert (root / "models" / "b" / "b.bin").exists()


def test_noop_check_sees_other_hardware(http_server, project, run):
    gpu, cpu = payload("gpu", 3000), payload("cpu", 3000)
    root = project(f'''
        [models.m]
        url = "{http_server.add("cpu.bin", cpu)}"

        [[models.m.variant]]
        name = "gpu"
        when = "accelerator == 'cuda'"
        url = "{http_server.add("gpu.bin", gpu)}"
        filename = "m.bin"

        [[models.m.variant]]
        name = "cpu"
        filename = "m.bin"
    ''')
    view_file = root / "models" / "m" / "m.bin"
    assert run("sync", cwd=root, env={"MODELSYNC_OVERRIDE_ACCELERATOR": "cpu"}).returncode == 0
    assert view_file.read_bytes() == cpu
    assert run("sync", cwd=root, env={"MODELSYNC_OVERRIDE_ACCELERATOR": "cuda"}).returncode == 0
    assert view_file.read_bytes() == gpu
    assert run("sync", cwd=root, env={"MODELSYNC_OVERRIDE_ACCELERATOR": "cuda"}).returncode == 0
    assert view_file.read_bytes() == gpu


def test_failed_sync_is_never_taken_for_a_noop(http_server, project, run, monkeypatch):
    data = payload("a", 3000)
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", data)}"
    ''')
    assert run("lock", cwd=root).returncode == 0
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(root.parent / "other-cache"))
    monkeypatch.setenv("MODELSYNC_HTTP_RETRIES", "1")
    http_server.hooks["/a.bin"] = lambda handler, body: (handler.send_error(503), None)[1]
    assert run("sync", cwd=root).returncode == 1
    del http_server.hooks["/a.bin"]
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "a" / "a.bin").read_bytes() == data


# --------------------------------------------------------------------------
# disk space


def test_not_enough_space_fails_before_any_download(http_server, project, run, monkeypatch, tmp_path):
    root = locked_project(http_server, project, monkeypatch, tmp_path, {"big": payload("big", 2 * MIB)})
    monkeypatch.setattr(syncer, "_free_space", lambda folder: MIB)
    result = run("sync", cwd=root)
    assert result.returncode == 1
    assert "not enough disk space" in result.stderr and "2.0 MiB needed" in result.stderr and "1.0 MiB free" in result.stderr
    assert [r for r in http_server.requests if r.method == "GET"] == []


def test_disk_full_mid_download_fails_cleanly_then_resumes(http_server, project, run, monkeypatch, tmp_path):
    data = payload("big", 4 * MIB)
    root = locked_project(http_server, project, monkeypatch, tmp_path, {"big": data})
    real_pwrite = os.pwrite
    written = {"bytes": 0}

    def filling_pwrite(fd, view, offset):  # the disk is full after 2.5 MiB
        if written["bytes"] >= int(2.5 * MIB):
            raise OSError(errno.ENOSPC, "No space left on device")
        count = real_pwrite(fd, view, offset)
        written["bytes"] += count
        return count

    monkeypatch.setattr(mpartial.os, "pwrite", filling_pwrite)
    result = run("sync", cwd=root)
    assert result.returncode == 1
    assert "no space left" in result.stderr and "more needed for this file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "models" / "big" / "big.bin").exists()
    store = Store()
    assert not store.blob_path(b3(data)).exists()
    assert store.partial_path(b3(data)).exists(), "the bytes written so far are kept for the next sync"

    monkeypatch.setattr(mpartial.os, "pwrite", real_pwrite)
    http_server.requests.clear()
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "big" / "big.bin").read_bytes() == data
    assert served_bytes(http_server, "big") <= len(data) - 2 * MIB


# --------------------------------------------------------------------------
# one download per blob, between processes


# Another process that claims the blob (as a concurrent sync would), then does
# what the test says: make some progress and publish the blob, or hang.
_HOLDER = """
import sys, time
from pathlib import Path
from modelsync.store import Store
store, digest, size, mode = Store(Path(sys.argv[1])), sys.argv[2], int(sys.argv[3]), sys.argv[4]
claim = store.claim(digest, size, stall_limit=60)
assert claim.owned
partial = store.partial_path(digest)
print("held", flush=True)
if mode == "finish":
    data = Path(sys.argv[5]).read_bytes()
    for step in range(5):
        partial.write_bytes(data[: (step + 1) * 1000])
        time.sleep(0.1)
    partial.write_bytes(data)
    store.publish(partial, digest)
else:
    time.sleep(60)
"""


def other_process(store: Store, data: bytes, mode: str, tmp_path: Path) -> subprocess.Popen:
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store.root), b3(data), str(len(data)), mode, str(source)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_waits_for_the_process_downloading_the_blob_and_downloads_nothing(http_server, project, run, monkeypatch, tmp_path):
    data = payload("big", 2 * MIB)
    root = locked_project(http_server, project, monkeypatch, tmp_path, {"big": data})
    holder = other_process(Store(), data, "finish", tmp_path)
    try:
        result = run("sync", cwd=root, env={"MODELSYNC_LOCK_TIMEOUT": "5"})
    finally:
        holder.wait(30)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "big" / "big.bin").read_bytes() == data
    assert [r for r in http_server.requests if r.method == "GET"] == []


def test_a_holder_that_makes_no_progress_is_waited_for_only_so_long(http_server, project, run, monkeypatch, tmp_path):
    data = payload("big", 2 * MIB)
    root = locked_project(http_server, project, monkeypatch, tmp_path, {"big": data})
    store = Store()
    holder = other_process(store, data, "hang", tmp_path)
    try:
        started = time.monotonic()
        result = run("sync", cwd=root, env={"MODELSYNC_LOCK_TIMEOUT": "0.5"})
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()
    assert (root / "models" / "big" / "big.bin").read_bytes() == data
    assert not store.partial_path(b3(data)).exists(), "the holder's partial is not ours to touch"


def test_a_killed_holder_never_blocks(http_server, project, run, monkeypatch, tmp_path):
    data = payload("big", 2 * MIB)
    root = locked_project(http_server, project, monkeypatch, tmp_path, {"big": data})
    holder = other_process(Store(), data, "hang", tmp_path)
    holder.kill()  # SIGKILL: no chance to clean up
    holder.wait()
    started = time.monotonic()
    result = run("sync", cwd=root)  # the default lock timeout is 60 s: this must not wait it out
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    assert (root / "models" / "big" / "big.bin").read_bytes() == data


# --------------------------------------------------------------------------
# resuming a partial a previous run left


def test_a_journal_that_does_not_fit_its_file_starts_over(http_server, project, run, monkeypatch, tmp_path):
    data = payload("big", 3 * MIB)
    root = locked_project(http_server, project, monkeypatch, tmp_path, {"big": data})
    store = Store()
    store.prepare()
    digest = b3(data)
    store.partial_path(digest).write_bytes(b"\0" * 1000)  # shorter than the journal claims
    store.journal_path(digest).write_text(json.dumps({"version": 1, "url": "x", "size": len(data), "validator": None, "parts": [[0, len(data), 2 * MIB], [len(data), len(data), 0]]}))
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "big" / "big.bin").read_bytes() == data


def test_a_resumed_partial_with_wrong_bytes_is_refetched_from_scratch(http_server, project, run, monkeypatch, tmp_path):
    data = payload("big", 3 * MIB)
    root = locked_project(http_server, project, monkeypatch, tmp_path, {"big": data})
    store = Store()
    store.prepare()
    digest = b3(data)
    store.partial_path(digest).write_bytes(bytes(MIB))  # a megabyte of zeros: not the file's first megabyte
    store.journal_path(digest).write_text(json.dumps({"version": 1, "url": http_server.url("big.bin"), "size": len(data), "validator": None, "parts": [[0, len(data), 0]]}))
    result = run("sync", cwd=root)
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "big" / "big.bin").read_bytes() == data
    ranges = [r.headers.get("Range") for r in http_server.requests if r.method == "GET"]
    assert ranges == [f"bytes={MIB}-", None], "resumed first, then once more from scratch"


# --------------------------------------------------------------------------
# progress for programs and for logs


def test_json_mode_streams_events_on_stderr_and_one_document_on_stdout(http_server, project, cli):
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", payload("a", 3000))}"

        [models.b]
        url = "{http_server.add("b.bin", payload("b", 5000))}"
    ''')
    assert cli("lock", cwd=root).returncode == 0
    result = cli("sync", "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(report["models"]) == ["a", "b"]
    events = [json.loads(line) for line in result.stderr.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert events[0]["total_files"] == 2
    assert sorted((e["model"], e["size"]) for e in events if e["event"] == "file") == [("a", 3000), ("b", 5000)]
    assert events[-1]["done_files"] == 2


def test_json_mode_reports_an_error_as_an_event(project, cli):
    root = project('''
        [models.a]
        url = "ftp://example.org/a.bin"
    ''')
    result = cli("sync", "--json", cwd=root)
    assert result.returncode == 2
    event = json.loads(result.stderr.strip().splitlines()[-1])
    assert event["event"] == "error" and event["exit_code"] == 2 and "models.toml" in event["message"]


def test_plain_log_shows_each_file_without_control_characters(http_server, project, cli):
    root = project(f'''
        [models.big]
        url = "{http_server.add("big.bin", payload("big", 2 * MIB))}"
    ''')
    assert cli("lock", cwd=root).returncode == 0
    result = cli("sync", cwd=root, env={"MODELSYNC_CACHE_DIR": str(root.parent / "c2")})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "syncing 1 file(s), 2.0 MiB to fetch"
    assert "  big/big.bin  2.0 MiB" in lines
    assert "\x1b" not in result.stderr, "no control characters in a log"


# --------------------------------------------------------------------------
# settings and retries


def test_each_part_has_its_own_tries(http_server, project, run, monkeypatch, tmp_path):
    """A blip on every connection of a split download (a 503 once per range) is
    retried per part: eight parts must not share five tries."""
    data = payload("big", 8 * MIB)
    root = locked_project(http_server, project, monkeypatch, tmp_path, {"big": data})
    seen: set[str] = set()

    def blip_once_per_range(handler, body):
        asked = handler.headers.get("Range", "")
        if asked not in seen:
            seen.add(asked)
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return None
        return body

    http_server.hooks["/big.bin"] = blip_once_per_range
    result = run("sync", cwd=root, env={"MODELSYNC_SPLIT_SIZE": str(MIB), "MODELSYNC_HTTP_BACKOFF": "0.01", "MODELSYNC_HTTP_RETRIES": "2"})
    assert result.returncode == 0, result.stderr
    assert (root / "models" / "big" / "big.bin").read_bytes() == data
    assert len(seen) > 5


@pytest.mark.parametrize("name, value", [("MODELSYNC_HTTP_TIMEOUT", "0"), ("MODELSYNC_HTTP_RETRIES", "many"), ("MODELSYNC_SPLIT_SIZE", "-1")])
def test_a_bad_setting_is_bad_input_even_with_nothing_to_do(http_server, project, run, name, value):
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", payload("a", 3000))}"
    ''')
    assert run("sync", cwd=root).returncode == 0
    result = run("sync", cwd=root, env={name: value})
    assert result.returncode == 2
    assert name in result.stderr


def test_json_mode_reports_warnings_as_events(http_server, project, cli):
    root = project(f'''
        [models.a]
        url = "{http_server.add("a.bin", payload("a", 3000))}"

        [models.extra]
        url = "{http_server.add("extra.bin", payload("extra", 3000))}"
        optional = true
    ''')
    assert cli("lock", cwd=root).returncode == 0
    del http_server.files["/extra.bin"]  # gone from the server: the optional model fails, with a warning
    result = cli("sync", "--json", cwd=root, env={"MODELSYNC_CACHE_DIR": str(root.parent / "c2")})
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(e["event"] == "warning" and "extra" in e["message"] for e in events)


def test_lock_fetches_a_large_file_in_parts_too(http_server, project, run):
    """At lock time the size is unknown: a HEAD tells it, and a large file comes in parts."""
    data = payload("big", 6 * MIB)
    root = project(f'''
        [models.big]
        url = "{http_server.add("big.bin", data)}"
    ''')
    result = run("lock", cwd=root, env={"MODELSYNC_SPLIT_SIZE": str(MIB)})
    assert result.returncode == 0, result.stderr
    ranged = [r for r in http_server.requests if r.method == "GET" and r.headers.get("Range")]
    assert len(ranged) > 1
    assert served_bytes(http_server, "big") == len(data), "every byte once"
    assert f'blake3 = "{b3(data)}"' in (root / "models.lock").read_text()


def test_lock_streams_when_the_server_offers_no_ranges(http_server, project, run):
    data = payload("big", 3 * MIB)
    root = project(f'''
        [models.big]
        url = "{http_server.add("big.bin", data)}"
    ''')

    def no_ranges(handler, body):  # a HEAD (or GET) answered without Accept-Ranges, whole
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command == "GET":
            handler.wfile.write(body)
        return None

    http_server.hooks["/big.bin"] = no_ranges
    result = run("lock", cwd=root, env={"MODELSYNC_SPLIT_SIZE": str(MIB)})
    assert result.returncode == 0, result.stderr
    assert [r.headers.get("Range") for r in http_server.requests if r.method == "GET"] == [None]
    assert f'blake3 = "{b3(data)}"' in (root / "models.lock").read_text()


def test_free_space_is_what_the_filesystem_reports(tmp_path):
    import shutil

    # statvfs is read twice a few µs apart: another process may write meanwhile, but not a GiB.
    assert abs(syncer._free_space(tmp_path) - shutil.disk_usage(tmp_path).free) < 1 << 30


def test_a_blob_goes_into_its_fan_out_folder_even_when_that_was_removed_meanwhile(tmp_path):
    store = Store(tmp_path / "cache")
    data = b"a small blob"
    path = store.put(data, b3(data))
    assert Path(path).read_bytes() == data
    # Another process (gc, a user's rm) removes the folder this process already wrote into.
    os.unlink(path)
    os.rmdir(os.path.dirname(path))
    assert store.put(data, b3(data)) == path
    assert Path(path).read_bytes() == data
    assert not list((tmp_path / "cache" / "tmp").glob("blob-*")), "no temp file is left behind"


def test_a_temp_file_that_vanished_before_it_was_published_is_an_error(tmp_path):
    store = Store(tmp_path / "cache")
    store.prepare()
    with pytest.raises(FileNotFoundError):
        store.publish(tmp_path / "cache" / "tmp" / "never-written.part", b3(b"x"))
    assert not (tmp_path / "cache" / "blobs" / "blake3" / b3(b"x")[:2]).exists(), "no folder is made for nothing"
