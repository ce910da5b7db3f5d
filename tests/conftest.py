"""Shared fixtures: an isolated cache and environment, a local HTTP server, a CLI runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest
from faultserver import fault_server  # noqa: F401  (registers the fault-injecting server fixture)
from hfhub import hf_hub  # noqa: F401  (registers the Hugging Face hub fixture for every test)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache and no modelsync / Hugging Face settings from the machine."""
    for name in list(os.environ):
        if name.startswith(("MODELSYNC_", "HF_")):
            monkeypatch.delenv(name)
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("MODELSYNC_CACHE_DIR", str(cache))
    from modelsync import _runtime

    _runtime._cache.clear()
    return cache


# --------------------------------------------------------------------------
# A threaded HTTP server with Range and HEAD, serving bytes the tests generate.


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FileServer:
    host: str = "127.0.0.1"
    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    # path -> hook(handler, body) -> body | None; a hook may send its own response and return None
    hooks: dict[str, Callable] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, data: bytes) -> str:
        self.files["/" + path.lstrip("/")] = data
        return self.url(path)


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _serve(self, head: bool) -> None:
            server.requests.append(Request(self.command, self.path, dict(self.headers)))
            path = self.path.split("?", 1)[0]
            body = server.files.get(path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            hook = server.hooks.get(path)
            if hook is not None:
                body = hook(self, body)
                if body is None:
                    return
            start, end, status = 0, len(body), 200
            header = self.headers.get("Range")
            if header and header.startswith("bytes="):
                first, _, last = header[len("bytes="):].partition("-")
                start = int(first) if first else 0
                end = int(last) + 1 if last else len(body)
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            chunk = body[start:end]
            self.send_response(status)
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hash(body) & 0xFFFFFFFF:x}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(body)}")
            self.end_headers()
            if not head:
                self.wfile.write(chunk)

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    request_queue_size = 128  # a lock's parallel connections at once: the default 5 costs 1 s SYN retries

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        """A client that hangs up mid-body (a cancelled part, a full disk) is normal here."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def http_server():
    state = FileServer()
    httpd = _QuietServer((state.host, 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=lambda: httpd.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------
# Projects and the CLI


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys, monkeypatch):
    """`modelsync ARGS` in this process (fast): the CLI's own main(), its exit code and output."""
    from modelsync.cli.main import main

    def invoke(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            try:
                code = main(list(args))
            except SystemExit as error:  # argparse
                code = error.code if isinstance(error.code, int) else 2
            from modelsync import _runtime

            _runtime._cache.clear()
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke




@pytest.fixture
def project(tmp_path: Path) -> Callable[[str], Path]:
    """Write a models.toml (dedented) into a fresh project folder and return the folder."""

    def make(manifest: str, folder: str = "app") -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        (root / "models.toml").write_text(textwrap.dedent(manifest), encoding="utf-8")
        return root

    return make


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m modelsync ARGS` in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONPATH", str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "modelsync", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    return run_cli


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """`python -m modelsync ARGS` in a subprocess that a test can signal."""

    def __init__(self, args: tuple[str, ...], cwd: Path, env: dict[str, str] | None, logs: Path) -> None:
        full_env = {**os.environ, **(env or {})}
        full_env.setdefault("PYTHONPATH", str(REPO))
        logs.mkdir(parents=True, exist_ok=True)
        self._out = open(logs / "stdout", "w+")  # noqa: SIM115 - open while the process runs
        self._err = open(logs / "stderr", "w+")  # noqa: SIM115
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "modelsync", *args],
            cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
            # A test run started in the background (`cmd &` in a script, some CI
            # runners) ignores SIGINT, and a child would inherit that: Ctrl-C
            # must reach modelsync as it does at a terminal.
            preexec_fn=_default_sigint,
        )

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            os.kill(self.popen.pid, signum)

    def finish(self, timeout: float) -> Result:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            stderr = self.stderr()
            self.kill()
            pytest.fail(f"modelsync did not finish within {timeout} s; stderr:\n{stderr}")
        self._out.seek(0)
        return Result(code, self._out.read(), self.stderr())

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read()

    def kill(self) -> None:
        if self.running():
            os.kill(self.popen.pid, signal.SIGKILL)  # also ends a stopped process
        self.popen.wait()
        self._out.close()
        self._err.close()


@pytest.fixture
def spawn(tmp_path):
    """Start `modelsync` subprocesses that a test can signal; whatever still runs at the end of the test is killed."""
    procs: list[Proc] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(args, cwd, env, tmp_path / "logs" / str(len(procs)))
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
