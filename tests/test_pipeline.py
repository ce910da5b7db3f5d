"""Many small files of one server over pipelined HTTP/1.1 streams (pipeline.py).

What a user sees: every file synced and verified, each fetched once, over a
connection or two instead of one per file; and whatever the server does to one
file (a 404, a 503, corrupt or encoded bytes, a longer body, a redirect, a drop,
a stall, a close after every answer), the sync ends as the normal path
(``transfer.fetch_blob``) decides, with its messages, and the other files are
synced all the same.

The syncs run in this process (``run``) and in threads (MODELSYNC_PROCESSES=1),
against a project of FILES url models m00… of a few KiB each, locked, then
synced into an empty cache. The fault server records each request's client
address, so a test can count the connections a sync opened.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultserver import (
    FaultServer,
    corrupt,
    drop_after,
    gzip,
    longer,
    stall_after,
    status,
)
from helpers import b3, files_under, payload

from modelsync import pipeline, sources
from modelsync import store as store_module
from modelsync.lockfile import LockedFile
from modelsync.sources import FetchItem
from modelsync.sources import url as url_source
from modelsync.store import Store

FILES = 24  # over pipeline.MIN_FILES: the files of the project share a stream
JOBS = 8


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads, not worker processes; retries at once; the default connection budget."""
    monkeypatch.setenv("MODELSYNC_PROCESSES", "1")
    monkeypatch.setenv("MODELSYNC_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("MODELSYNC_JOBS", str(JOBS))
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------
# a locked project of small url models


@dataclass
class Project:
    root: Path
    cache: Path  # the (empty) cache the syncs use
    data: dict[str, bytes]  # model -> its file's bytes

    @staticmethod
    def path(name: str) -> str:
        """The server path of a model's file."""
        return f"f/{name}.bin"

    def target(self, name: str) -> Path:
        return self.root / "models" / name / f"{name}.bin"

    def missing(self) -> list[str]:
        """The models whose view file is absent or has other bytes than served."""
        return [name for name, body in self.data.items() if not (self.target(name).is_file() and self.target(name).read_bytes() == body)]


def make_project(server, project, run, monkeypatch, tmp_path: Path, count: int = FILES) -> Project:
    """``count`` url models m00… on ``server`` (a FaultServer or conftest's FileServer), locked;
    then an empty cache for the syncs, as on a new machine."""
    data = {f"m{i:02}": payload(f"pipe-{i}", 3000 + 211 * i) for i in range(count)}
    manifest = "".join(f'[models.{name}]\nurl = "{server.add(Project.path(name), body)}"\n\n' for name, body in data.items())
    root = project(manifest)
    result = run("lock", cwd=root)
    assert result.returncode == 0, result.stderr
    cache = tmp_path / "sync-cache"
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(cache))
    return Project(root, cache, data)


@pytest.fixture
def small(fault_server, project, run, monkeypatch, tmp_path) -> Project:
    made = make_project(fault_server, project, run, monkeypatch, tmp_path)
    fault_server.clear_log()
    return made


@pytest.fixture
def normal(small, monkeypatch) -> list[str]:
    """The URLs the sync sent the normal way (``transfer.fetch_blob``), after the lock."""
    return spy_normal(monkeypatch)


def spy_normal(monkeypatch) -> list[str]:
    """From now on, the URLs sent the normal way (``transfer.fetch_blob``)."""
    urls: list[str] = []
    fetch_blob = url_source.fetch_blob

    def spy(ctx, url, *args, **kwargs):  # type: ignore[no-untyped-def]
        urls.append(url)
        return fetch_blob(ctx, url, *args, **kwargs)

    monkeypatch.setattr(url_source, "fetch_blob", spy)
    return urls


def get_counts(server: FaultServer, since: int = 0) -> Counter:
    """GETs per server path."""
    return Counter(r.path for r in server.requests[since:] if r.method == "GET")


def once_each(small: Project, *, but: tuple[str, ...] = ()) -> dict[str, int]:
    """The GET counts expected when every file but ``but`` was fetched exactly once."""
    return {f"/{small.path(name)}": 1 for name in small.data if name not in but}


def others(counts: Counter, *names: str) -> dict[str, int]:
    """``counts`` without the files of ``names``."""
    return {path: n for path, n in counts.items() if path not in {f"/{Project.path(name)}" for name in names}}


def connections(server: FaultServer) -> set[tuple]:
    """Distinct client addresses of the GETs: one per connection."""
    return {r.client for r in server.requests if r.method == "GET"}


def assert_clean(result, code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr


# --------------------------------------------------------------------------
# 1. the usual case: every file once, over few connections


@pytest.mark.parametrize("per_stream", [pipeline.BYTES_PER_STREAM, 50_000], ids=["one-stream", "three-streams"])
def test_small_files_are_synced_once_each_over_few_connections(small, fault_server, run, monkeypatch, normal, per_stream):
    monkeypatch.setattr(pipeline, "BYTES_PER_STREAM", per_stream)
    streams = len(pipeline.streams([item("http://h/", size=len(body)) for body in small.data.values()], JOBS))

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert small.missing() == []
    assert dict(get_counts(fault_server)) == once_each(small)
    used = connections(fault_server)
    assert 1 <= len(used) <= streams < FILES // 4, used  # per stream, not per file (8 jobs would open 8)
    assert normal == []  # every file came by a stream
    for body in small.data.values():  # verified blobs in the cache, read-only
        blob = Store(small.cache).blob_path(b3(body))
        assert blob.read_bytes() == body
        assert not blob.stat().st_mode & 0o222

    fault_server.clear_log()
    again = run("sync", cwd=small.root)
    assert_clean(again, 0)
    assert fault_server.requests == []


@pytest.mark.parametrize("depth", ["1", "2", "3"])
def test_the_pipeline_depth_setting(small, fault_server, run, normal, depth):
    result = run("sync", cwd=small.root, env={"MODELSYNC_PIPELINE": depth})

    assert_clean(result, 0)
    assert small.missing() == []
    assert dict(get_counts(fault_server)) == once_each(small)
    if depth == "1":  # one request at a time: every file the normal way
        assert sorted(normal) == sorted(fault_server.url(small.path(name)) for name in small.data)
    else:
        assert normal == [] and len(connections(fault_server)) == 1


def test_a_bad_pipeline_depth_is_a_usage_error(small, fault_server, run):
    result = run("sync", cwd=small.root, env={"MODELSYNC_PIPELINE": "0"})

    assert_clean(result, 2)
    assert "MODELSYNC_PIPELINE" in result.stderr, result.stderr
    assert fault_server.requests == []


def test_streams_are_per_server_and_a_server_of_few_files_goes_the_normal_way(fault_server, project, run, monkeypatch, tmp_path):
    # The fault server under two names: two servers to modelsync.
    many = {f"m{i:02}": payload(f"pipe-{i}", 3000 + 211 * i) for i in range(12)}
    few = {f"x{i}": payload(f"few-{i}", 2500 + 101 * i) for i in range(pipeline.MIN_FILES - 1)}
    manifest = "".join(f'[models.{name}]\nurl = "{fault_server.add(Project.path(name), body)}"\n\n' for name, body in many.items())
    other = {name: fault_server.add(Project.path(name), body).replace("127.0.0.1", "localhost") for name, body in few.items()}
    manifest += "".join(f'[models.{name}]\nurl = "{url}"\n\n' for name, url in other.items())
    root = project(manifest)
    assert run("lock", cwd=root).returncode == 0
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(tmp_path / "sync-cache"))
    fault_server.clear_log()
    made = Project(root, tmp_path / "sync-cache", {**many, **few})
    normal = spy_normal(monkeypatch)

    result = run("sync", cwd=root)

    assert_clean(result, 0)
    assert made.missing() == []
    assert dict(get_counts(fault_server)) == once_each(made)
    assert sorted(normal) == sorted(other.values())  # too few for a stream of their own


# --------------------------------------------------------------------------
# 2. a 404 fails its own file, with the normal path's message


def test_a_404_fails_only_its_file_and_the_next_sync_fetches_only_it(small, fault_server, run, normal):
    bad = "m11"
    fault_server.always(small.path(bad), status(404))

    result = run("sync", cwd=small.root)

    assert_clean(result, 1)
    assert f"{bad}/{bad}.bin" in result.stderr, result.stderr
    assert "HTTP 404" in result.stderr, result.stderr
    assert fault_server.url(small.path(bad)) in result.stderr, result.stderr  # the normal path names the URL
    assert not any(f"{name}/{name}.bin:" in result.stderr for name in small.data if name != bad), result.stderr
    assert small.missing() == [bad]
    counts = get_counts(fault_server)
    assert others(counts, bad) == once_each(small, but=(bad,))
    # the stream's answer, then the normal path's
    assert [r.status for r in fault_server.gets(small.path(bad))] == [404, 404]
    assert normal == [fault_server.url(small.path(bad))]

    fault_server.always(small.path(bad), None)  # the server has it now
    mark = fault_server.mark()
    again = run("sync", cwd=small.root)

    assert_clean(again, 0)
    assert small.missing() == []
    assert dict(get_counts(fault_server, mark)) == {f"/{small.path(bad)}": 1}


# --------------------------------------------------------------------------
# 3. a 503 goes to the normal path, which retries


@pytest.mark.parametrize("times", [1, 2])
def test_a_503_is_retried_by_the_normal_path(small, fault_server, run, times):
    flaky = "m05"
    fault_server.fault(small.path(flaky), *[status(503)] * times)

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert small.missing() == []
    assert [r.status for r in fault_server.gets(small.path(flaky))] == [503] * times + [200]
    assert others(get_counts(fault_server), flaky) == once_each(small, but=(flaky,))


# --------------------------------------------------------------------------
# 4, 5. corrupt bytes are never kept


def test_corrupt_every_time_fails_with_both_digests_and_keeps_nothing(small, fault_server, run):
    bad = "m07"
    fault_server.always(small.path(bad), corrupt())
    good = small.data[bad]
    wrong = bytearray(good)
    wrong[len(wrong) // 2] ^= 0xFF

    result = run("sync", cwd=small.root)

    assert_clean(result, 1)
    assert f"{bad}/{bad}.bin" in result.stderr, result.stderr
    assert b3(good) in result.stderr, result.stderr  # expected, from models.lock
    assert b3(bytes(wrong)) in result.stderr, result.stderr  # found
    assert small.missing() == [bad]
    assert not small.target(bad).exists()
    assert not Store(small.cache).blob_path(b3(good)).exists()
    assert [p for p in files_under(small.cache) if p.read_bytes() == bytes(wrong)] == []
    assert not (Store(small.cache).blobs_dir / b3(bytes(wrong))[:2] / b3(bytes(wrong))[2:]).exists()
    assert len(fault_server.gets(small.path(bad))) == 3  # the stream's answer, then the normal path's two tries
    assert others(get_counts(fault_server), bad) == once_each(small, but=(bad,))


def test_corrupt_once_is_fetched_again(small, fault_server, run):
    flaky = "m07"
    fault_server.fault(small.path(flaky), corrupt())

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert small.missing() == []
    assert [r.fault for r in fault_server.gets(small.path(flaky))] == ["corrupt", None]


# --------------------------------------------------------------------------
# 6. a connection dropped mid-body: the unanswered requests go again


@pytest.mark.parametrize("dropped", ["m00", "m11", "m23"])
def test_a_dropped_connection_is_resent_on_a_fresh_one(small, fault_server, run, normal, dropped):
    fault_server.fault(small.path(dropped), drop_after(100))

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert small.missing() == []
    cut, again = fault_server.gets(small.path(dropped))
    assert cut.sent == 100 and again.status == 200 and again.sent == len(small.data[dropped])
    assert others(get_counts(fault_server), dropped) == once_each(small, but=(dropped,))  # nothing answered twice
    assert len(connections(fault_server)) <= 2
    assert normal == []  # the unanswered requests went again on the stream, not the normal way


def test_repeated_drops_of_one_file_still_sync_everything(small, fault_server, run, normal):
    """Two fresh connections in a row without progress: the stream gives up and the
    normal path fetches what is left (the dropped file included)."""
    dropped = "m11"
    fault_server.fault(small.path(dropped), *[drop_after(100)] * 3)

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert small.missing() == []
    gets = fault_server.gets(small.path(dropped))
    assert [r.fault for r in gets] == ["drop"] * 3 + [None]
    assert fault_server.url(small.path(dropped)) in normal  # the last GET was the normal path's
    assert others(get_counts(fault_server), dropped) == once_each(small, but=(dropped,))


def test_a_file_dropped_every_time_fails_alone(small, fault_server, run):
    dropped = "m11"
    fault_server.always(small.path(dropped), drop_after(0))

    result = run("sync", cwd=small.root, env={"MODELSYNC_HTTP_RETRIES": "2"})

    assert_clean(result, 1)
    assert f"{dropped}/{dropped}.bin" in result.stderr, result.stderr
    assert "after 2 attempt" in result.stderr, result.stderr  # the normal path's retries, and its message
    assert small.missing() == [dropped]
    # the stream: the connection that dropped it, then at most 2 more in a row without progress;
    # then the normal path's 2 tries
    assert len(fault_server.gets(small.path(dropped))) <= 3 + 2
    assert others(get_counts(fault_server), dropped) == once_each(small, but=(dropped,))


# --------------------------------------------------------------------------
# 7. encoded and longer answers: as the normal path decides


def test_a_gzip_answer_is_decoded_by_the_normal_path(small, fault_server, run):
    encoded = "m05"
    fault_server.always(small.path(encoded), gzip())

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert small.missing() == []
    assert small.target(encoded).read_bytes() == small.data[encoded]
    gets = fault_server.gets(small.path(encoded))
    assert len(gets) == 2 and all(r.fault == "encoding" for r in gets)  # the stream's, left; the normal path's
    assert others(get_counts(fault_server), encoded) == once_each(small, but=(encoded,))


def test_a_longer_body_every_time_fails_with_a_size_mismatch(small, fault_server, run):
    """The normal path refuses a Content-Length other than the pinned size, tries the
    file once more from scratch, and fails with both sizes."""
    bad = "m06"
    size = len(small.data[bad])
    fault_server.always(small.path(bad), longer(10))

    result = run("sync", cwd=small.root)

    assert_clean(result, 1)
    assert f"{bad}/{bad}.bin" in result.stderr, result.stderr
    assert "size mismatch" in result.stderr, result.stderr
    assert f"{size} bytes" in result.stderr and f"{size + 10} bytes" in result.stderr, result.stderr
    assert small.missing() == [bad]
    assert not Store(small.cache).blob_path(b3(small.data[bad])).exists()
    assert len(fault_server.gets(small.path(bad))) == 3
    assert others(get_counts(fault_server), bad) == once_each(small, but=(bad,))


def test_a_longer_body_once_is_fetched_again(small, fault_server, run):
    flaky = "m06"
    fault_server.fault(small.path(flaky), longer(10))

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert small.missing() == []
    assert [r.fault for r in fault_server.gets(small.path(flaky))] == ["longer", None]


# --------------------------------------------------------------------------
# 8. a stall gives the rest of the stream to the normal path at once


def test_a_stall_leaves_the_rest_to_the_normal_path(small, fault_server, run, normal):
    stalled = "m11"
    fault_server.fault(small.path(stalled), stall_after(0, 5))

    result = run("sync", cwd=small.root, env={"MODELSYNC_HTTP_TIMEOUT": "0.5"})

    assert_clean(result, 0)
    assert small.missing() == []
    first, retry = fault_server.gets(small.path(stalled))
    assert first.fault == "stall" and retry.status == 200
    assert first.ended is None or retry.started < first.ended  # given up by the client, not closed by the server
    assert normal[0] == fault_server.url(small.path(stalled))  # the stalled file first, then the rest, the normal way
    assert len(normal) == len(set(normal)) >= 1
    assert others(get_counts(fault_server), stalled) == once_each(small, but=(stalled,))


def test_a_file_that_stalls_every_time_fails_alone_after_one_stall_of_the_stream(small, fault_server, run):
    stalled = "m11"
    fault_server.always(small.path(stalled), stall_after(0, 5))

    result = run("sync", cwd=small.root, env={"MODELSYNC_HTTP_TIMEOUT": "0.5", "MODELSYNC_HTTP_RETRIES": "2"})

    assert_clean(result, 1)
    assert f"{stalled}/{stalled}.bin" in result.stderr, result.stderr
    assert "after 2 attempt" in result.stderr, result.stderr
    assert small.missing() == [stalled]
    # the stream waited for it once, then left it (and the rest) to the normal path and its 2 tries
    assert len(fault_server.gets(small.path(stalled))) == 1 + 2
    assert others(get_counts(fault_server), stalled) == once_each(small, but=(stalled,))


# --------------------------------------------------------------------------
# 9. a server that closes the connection after every answer


def close_after_every_answer(mode: str, connections: list[tuple]):  # type: ignore[no-untyped-def]
    """A hook for conftest's ``http_server`` that answers one request per connection:
    "connection-close" says so in a header, "http/1.0" answers as HTTP/1.0, "silent-close"
    closes without a word. It records each answer's client address in ``connections``."""

    def hook(handler, body: bytes) -> None:  # type: ignore[no-untyped-def]
        connections.append(tuple(handler.client_address))
        handler.close_connection = True
        if mode == "http/1.0":
            handler.wfile.write(f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            return None
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        if mode == "connection-close":
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
        return None

    return hook


@pytest.mark.parametrize("mode", ["connection-close", "http/1.0", "silent-close"])
def test_a_server_that_closes_after_every_answer(mode, http_server, project, run, monkeypatch, tmp_path):
    made = make_project(http_server, project, run, monkeypatch, tmp_path)
    connections: list[tuple] = []
    for name in made.data:
        http_server.hooks["/" + Project.path(name)] = close_after_every_answer(mode, connections)
    http_server.requests.clear()
    normal = spy_normal(monkeypatch)

    result = run("sync", cwd=made.root)

    assert_clean(result, 0)
    assert made.missing() == []
    assert Counter(r.path.lstrip("/") for r in http_server.requests) == Counter(Project.path(name) for name in made.data)
    assert len(set(connections)) == FILES  # it did answer once per connection
    # Two connections of one answer each: the stream leaves the rest to the normal
    # path, which has all the connections (not one file at a time on a stream).
    assert len(normal) == FILES - 2


def test_an_empty_file_and_files_with_the_same_bytes(fault_server, project, run, monkeypatch, tmp_path):
    data = {f"m{i:02}": payload(f"pipe-{i}", 3000 + 211 * i) for i in range(12)}
    data["empty"] = b""
    data["twin"] = data["m03"]  # the same bytes from another URL: one blob for both
    manifest = "".join(f'[models.{name}]\nurl = "{fault_server.add(Project.path(name), body)}"\n\n' for name, body in data.items())
    root = project(manifest)
    assert run("lock", cwd=root).returncode == 0
    cache = tmp_path / "sync-cache"
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(cache))
    fault_server.clear_log()
    made = Project(root, cache, data)

    result = run("sync", cwd=root)

    assert_clean(result, 0)
    assert made.missing() == []
    counts = get_counts(fault_server)
    assert counts[f"/{Project.path('m03')}"] + counts[f"/{Project.path('twin')}"] == 1  # the shared blob, once
    assert others(counts, "m03", "twin") == once_each(made, but=("m03", "twin"))
    assert Store(cache).has(b3(b""), 0)


# --------------------------------------------------------------------------
# 10. redirects: the normal path follows them


@pytest.mark.parametrize("code", [301, 302, 307])
def test_redirected_files_are_followed_by_the_normal_path(small, fault_server, run, code):
    moved = [name for i, name in enumerate(small.data) if i % 2 == 0]
    for name in moved:
        location = fault_server.add(f"real/{name}.bin", small.data[name])
        fault_server.always(small.path(name), status(code, {"Location": location}))

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert small.missing() == []
    for name in moved:
        assert [r.status for r in fault_server.gets(small.path(name))] == [code, code]  # the stream's, the normal path's
        assert [r.status for r in fault_server.gets(f"real/{name}.bin")] == [200]
    direct = Counter(r.path for r in fault_server.requests if r.method == "GET" and r.path.startswith("/f/"))
    assert others(direct, *moved) == once_each(small, but=tuple(moved))


@pytest.mark.parametrize("depth", [None, "1"], ids=["pipelined", "not-pipelined"])
def test_files_a_stream_leaves_are_still_fetched_several_at_a_time(small, fault_server, run, monkeypatch, depth):
    """Every file of the server redirects (as GitHub release assets do): the stream
    leaves them all, and the normal path should fetch them ``jobs`` at a time, as it
    does without the pipeline (MODELSYNC_PIPELINE=1), not one after the other in the
    stream's thread. (Measured with 24 files: a redirecting server, 50 ms an answer,
    2.5 s instead of 0.5 s; a server that is down, backoff 0.1 s, 27 s instead of 4 s
    before the sync reports the failures.)

    The first normal-path fetch waits (at most 2 s) for a second one to start."""
    for name, body in small.data.items():
        location = fault_server.add(f"real/{name}.bin", body)
        fault_server.always(small.path(name), status(302, {"Location": location}))
    fetch_blob = url_source.fetch_blob
    lock = threading.Lock()
    active, most, calls = [0], [0], [0]
    partner = threading.Event()

    def spy(ctx, url, *args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            calls[0] += 1
            first = calls[0] == 1
            if active[0] >= 2:
                partner.set()
        try:
            if first:
                partner.wait(2)
            return fetch_blob(ctx, url, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(url_source, "fetch_blob", spy)

    result = run("sync", cwd=small.root, env={"MODELSYNC_PIPELINE": depth} if depth else None)

    assert_clean(result, 0)
    assert small.missing() == []
    assert most[0] >= 2, "the files the stream left were fetched one at a time"


# --------------------------------------------------------------------------
# 11. which files share a stream, and how they are shared out


def item(url: str | None, size: int = 4096, model: str = "m", path: str = "f.bin") -> FetchItem:
    return FetchItem(model, LockedFile(path=path, size=size, blake3="0" * 64, url=url))


def test_origin_is_the_scheme_and_host_of_a_small_url_file():
    assert pipeline.origin("url", [item("http://127.0.0.1:8000/a/b.bin")]) == "http://127.0.0.1:8000"
    assert pipeline.origin("url", [item("https://Example.COM/x")]) == "https://example.com"
    assert pipeline.origin("url", [item("HTTPS://example.com/y?z=1")]) == "https://example.com"
    # same server: same origin, whatever the path and the case
    assert pipeline.origin("url", [item("https://HOST.example/a")]) == pipeline.origin("url", [item("https://host.example/b/c")])
    # another scheme or port: another server
    assert pipeline.origin("url", [item("http://host.example/a")]) != pipeline.origin("url", [item("https://host.example/a")])
    assert pipeline.origin("url", [item("http://host.example:81/a")]) != pipeline.origin("url", [item("http://host.example:82/a")])


def test_origin_is_none_for_what_goes_the_normal_way():
    url = "https://example.com/a"
    assert pipeline.origin("url", [item(url, size=pipeline.MAX_SIZE)]) is not None
    assert pipeline.origin("url", [item(url, size=pipeline.MAX_SIZE + 1)]) is None  # large: held in memory otherwise
    assert pipeline.origin("url", [item(None)]) is None
    for kind in ("hf", "pypi", "path"):
        assert pipeline.origin(kind, [item(url)]) is None
    assert pipeline.origin("url", []) is None
    assert pipeline.origin("url", [item(url), item(url + "2")]) is None  # a task of several files


def sized(count: int, size: int = 1000) -> list[FetchItem]:
    return [item(f"http://h/{i}", size=size, model=f"m{i}") for i in range(count)]


def test_streams_share_out_every_item_once(monkeypatch):
    monkeypatch.setattr(pipeline, "BYTES_PER_STREAM", 10_000)  # ten files of 1000 bytes a stream
    assert pipeline.streams(sized(pipeline.MIN_FILES - 1), JOBS) == []
    assert pipeline.streams([], JOBS) == []
    assert len(pipeline.streams(sized(pipeline.MIN_FILES), JOBS)) == 1
    for count, jobs, expected in [
        (10, 8, 1),
        (11, 8, 2),
        (100, 8, 8),  # capped by the connection budget
        (100, 3, 3),
        (100, 1, 1),
        (30, 8, 3),
    ]:
        items = sized(count)
        parts = pipeline.streams(items, jobs)
        assert len(parts) == expected, (count, jobs)
        assert sorted(x.model for part in parts for x in part) == sorted(x.model for x in items)  # every item exactly once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # evenly


def test_streams_follow_the_bytes_not_the_count():
    """Many tiny files: one stream (more would only queue for the GIL); files of a MiB:
    a stream per BYTES_PER_STREAM, for the bandwidth of several connections."""
    assert len(pipeline.streams(sized(2000, 16 << 10), 8)) == 1
    assert len(pipeline.streams(sized(200, 1 << 20), 8)) == -(-(200 << 20) // pipeline.BYTES_PER_STREAM)


# --------------------------------------------------------------------------
# 12. Store.put


def test_store_put_publishes_a_read_only_blob(tmp_path):
    store = Store(tmp_path / "cache")
    data = payload("put", 5000)

    path = store.put(data, b3(data))

    assert Path(path) == store.blob_path(b3(data))
    assert Path(path).read_bytes() == data
    assert not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert store.has(b3(data), len(data))
    assert [p for p in store.tmp_dir.iterdir() if p.is_file()] == []


def test_store_put_repairs_a_damaged_blob(tmp_path):
    store = Store(tmp_path / "cache")
    data = payload("repair", 3000)
    target = store.blob_path(b3(data))
    target.parent.mkdir(parents=True)
    target.write_bytes(bytes(len(data)))  # writable, wrong bytes: not trusted
    assert not store.has(b3(data), len(data))

    store.put(data, b3(data))

    assert target.read_bytes() == data
    assert store.has(b3(data), len(data))


class _FullDisk:
    """``os`` for modelsync.store, with a write that finds the disk full."""

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(os, name)

    @staticmethod
    def write(fd: int, data) -> int:  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_store_put_on_a_full_disk_raises_and_leaves_no_temp_file(tmp_path, monkeypatch):
    store = Store(tmp_path / "cache")
    store.prepare()
    data = payload("full", 5000)
    monkeypatch.setattr(store_module, "os", _FullDisk())

    with pytest.raises(OSError) as raised:
        store.put(data, b3(data))

    assert raised.value.errno == errno.ENOSPC
    assert [p for p in files_under(store.tmp_dir) if p.name != "blobs.lock"] == []  # no temp file left
    assert not store.blob_path(b3(data)).exists()


def test_a_full_disk_during_a_stream_fails_the_sync_cleanly(small, fault_server, run, monkeypatch):
    monkeypatch.setattr(store_module, "os", _FullDisk())

    result = run("sync", cwd=small.root)

    assert_clean(result, 1)
    assert os.strerror(errno.ENOSPC) in result.stderr, result.stderr
    assert [p for p in files_under(small.cache / "tmp") if p.name.endswith(".part")] == []
    assert files_under(small.cache / "blobs") == []


# --------------------------------------------------------------------------
# 13. a blob someone else holds goes the normal way, which waits for it


def test_a_blob_claimed_elsewhere_is_still_fetched(small, fault_server, run, monkeypatch, normal):
    held = "m09"
    digest = b3(small.data[held])
    original = Store.try_claim
    asked: list[str] = []

    def try_claim(self, blob, size):  # type: ignore[no-untyped-def]
        asked.append(blob)
        return None if blob == digest else original(self, blob, size)

    monkeypatch.setattr(Store, "try_claim", try_claim)

    result = run("sync", cwd=small.root)

    assert_clean(result, 0)
    assert digest in asked  # the stream did ask for it
    assert small.missing() == []
    assert dict(get_counts(fault_server)) == once_each(small)  # fetched once: by the normal path, not the stream
    assert normal == [fault_server.url(small.path(held))]


# --------------------------------------------------------------------------
# pipeline.fetch on its own: what it takes and what it leaves


@pytest.fixture
def context(tmp_path):
    made: list[sources.Context] = []

    def make(jobs: int = 4) -> sources.Context:
        ctx = sources.Context(store=Store(tmp_path / "unit-cache"), project_root=tmp_path, jobs=jobs)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        if ctx._client is not None:
            ctx._client.close()


def served_items(server: FaultServer, count: int = 12) -> dict[str, tuple[FetchItem, bytes]]:
    out = {}
    for i in range(count):
        data = payload(f"unit-{i}", 2000 + 97 * i)
        url = server.add(f"u/{i:02}.bin", data)
        out[f"{i:02}"] = (
            FetchItem(
                f"u{i:02}",
                LockedFile(path=f"{i:02}.bin", size=len(data), blake3=b3(data), url=url),
            ),
            data,
        )
    return out


def test_fetch_takes_only_the_pinned_bytes_and_leaves_every_other_answer(fault_server, context):
    files = served_items(fault_server)
    faults = {
        "01": status(404),
        "03": corrupt(),
        "05": gzip(),
        "07": longer(10),
        "09": status(302, {"Location": "/u/00.bin"}),
        "10": status(503),
    }
    for key, fault in faults.items():
        fault_server.always(f"u/{key}.bin", fault)
    ctx = context()
    done: list[FetchItem] = []

    left = pipeline.fetch([it for it, _ in files.values()], ctx, done.append)

    assert sorted(it.model for it in left) == sorted(f"u{key}" for key in faults)
    assert sorted(it.model for it in done) == sorted(f"u{key}" for key in files if key not in faults)
    for key, (it, data) in files.items():
        blob = ctx.store.blob_path(it.file.blake3)
        assert blob.exists() == (key not in faults), key
        if blob.exists():
            assert blob.read_bytes() == data
    assert len(connections(fault_server)) == 1  # the answers it left did not cost a connection each
    assert [p for p in files_under(ctx.store.root) if p.name.endswith(".part")] == []


def test_fetch_does_not_ask_for_a_blob_already_in_the_store(fault_server, context):
    files = served_items(fault_server)
    ctx = context()
    there, data = files["04"]
    ctx.store.put(data, there.file.blake3)
    done: list[FetchItem] = []

    left = pipeline.fetch([it for it, _ in files.values()], ctx, done.append)

    assert left == []
    assert sorted(it.model for it in done) == sorted(it.model for it, _ in files.values())
    assert "/u/04.bin" not in get_counts(fault_server)
    assert len(get_counts(fault_server)) == len(files) - 1


def test_fetch_leaves_a_blob_another_holder_has_claimed(fault_server, context, monkeypatch):
    files = served_items(fault_server)
    ctx = context()
    held = files["06"][0]
    original = Store.try_claim
    monkeypatch.setattr(
        Store,
        "try_claim",
        lambda self, blob, size: None if blob == held.file.blake3 else original(self, blob, size),
    )
    done: list[FetchItem] = []

    left = pipeline.fetch([it for it, _ in files.values()], ctx, done.append)

    assert left == [held]
    assert held not in done and len(done) == len(files) - 1
    assert "/u/06.bin" not in get_counts(fault_server)


def test_fetch_leaves_everything_when_the_server_cannot_be_reached(context):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    items = [item(f"http://127.0.0.1:{port}/{i}.bin", model=f"m{i}") for i in range(10)]
    done: list[FetchItem] = []

    left = pipeline.fetch(items, context(), done.append)

    assert left == items and done == []


@pytest.mark.parametrize("where", ["first", "middle"])
def test_fetch_leaves_a_url_it_cannot_route(fault_server, context, where):
    files = served_items(fault_server, count=10)
    served = [it for it, _ in files.values()]
    odd = item(f"http://user:secret@127.0.0.1:{fault_server.port}/u/00.bin", model="creds")  # route() refuses it
    items = [odd, *served] if where == "first" else [*served[:5], odd, *served[5:]]
    done: list[FetchItem] = []

    left = pipeline.fetch(items, context(), done.append)

    assert odd in left and odd not in done
    assert sorted(it.model for it in left + done) == sorted(it.model for it in items)  # each either taken or left
    if where == "middle":
        assert left == [odd] and len(done) == len(served)


# --------------------------------------------------------------------------
# 14. plain HTTP through a proxy: every file goes the normal way


def test_plain_http_through_a_proxy_is_not_pipelined(fault_server, context, monkeypatch):
    # The fault server serves absolute-URL requests too: it can stand for a forward proxy.
    monkeypatch.setenv("http_proxy", f"http://{fault_server.host}:{fault_server.port}")
    files = served_items(fault_server, count=10)
    items = [it for it, _ in files.values()]
    ctx = context()
    assert ctx.client.route(items[0].file.url, {})[0][3] is not None  # routed through the proxy
    with ctx.client.get(items[0].file.url) as response:  # which works, for the normal path
        assert response.status == 200
    fault_server.clear_log()
    done: list[FetchItem] = []

    left = pipeline.fetch(items, ctx, done.append)

    assert left == items and done == []
    assert fault_server.requests == []


def test_no_proxy_for_the_host_pipelines_again(fault_server, context, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    files = served_items(fault_server, count=10)
    items = [it for it, _ in files.values()]
    done: list[FetchItem] = []

    left = pipeline.fetch(items, context(), done.append)

    assert left == [] and len(done) == len(items)
    assert len(connections(fault_server)) == 1


class _ProxiedClient:
    """A client whose every URL routes through a proxy; it must not be asked to connect."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.opened = 0

    def default_headers(self, headers=None):  # type: ignore[no-untyped-def]
        return {"User-Agent": "test", **(headers or {})}

    def route(self, url, headers):  # type: ignore[no-untyped-def]
        return (
            (self.scheme, "example.com", 80, ("proxy.example", 3128, None)),
            "/x",
            {"Host": "example.com", **headers},
        )

    def open(self, key):  # type: ignore[no-untyped-def]
        self.opened += 1
        raise ConnectionRefusedError("no server in this test")

    def finish(self, key, connection, *, reusable):  # type: ignore[no-untyped-def]
        pass

    def close(self) -> None:
        pass


def test_a_route_through_a_plain_proxy_leaves_every_file(context):
    ctx = context()
    client = _ProxiedClient("http")
    ctx._client = client  # type: ignore[assignment]
    items = [item(f"http://example.com/{i}.bin", model=f"m{i}") for i in range(10)]
    done: list[FetchItem] = []

    left = pipeline.fetch(items, ctx, done.append)

    assert left == items and done == []
    assert client.opened == 0
