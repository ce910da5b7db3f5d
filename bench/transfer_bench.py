"""`modelsync sync` against the downloaders users would otherwise pick, same files, nginx on loopback.

    python bench/transfer_bench.py [--runs 5] [--sets big,mid,small] [--tools ...] [--big-size BYTES]
                                   [--sleep 4] [--data DIR] [--markdown FILE] [--json FILE]

The data sets (random bytes from os.urandom, generated once into --data and reused while they
have the right sizes):

- ``big``: one file of --big-size bytes (2 GiB by default);
- ``mid``: 200 files of 1 MiB;
- ``small``: 2000 files of 16 KiB.

nginx, started by the benchmark with its own configuration, pid file and temp paths (on a free
127.0.0.1 port, ``sendfile on``, keep-alive for a million requests, no access log), serves them
to every tool. The tools, each run as a fresh subprocess writing into a fresh folder:

- ``modelsync``: this checkout, installed as users get it (a wheel, not editable: see
  ``release_install``), running ``modelsync sync --frozen -q`` in a fresh copy of a project with one
  ``[models.NAME] url = ...`` per file, locked once before timing (``modelsync lock`` with a
  throwaway cache), with a fresh, empty MODELSYNC_CACHE_DIR. It checks every file's blake3.
- ``modelsync-hf``: the same with one ``hf =`` model against the test hub (below).
- ``curl``: one curl process fetching every URL in turn over one connection (``--config``
  with a ``url``/``output`` pair per file).
- ``curl-z8``: the same with ``-Z --parallel-max 8`` (mid and small only).
- ``aria2c``: big with ``-x8 -s8 -k1M``; mid and small with ``-j8`` from an input file.
- ``pooch``: ``pooch.retrieve(url, known_hash="sha256:...", path=...)``, 8 threads in one
  process; it checks every file's sha256.
- ``snapshot_download``: huggingface_hub's ``snapshot_download(max_workers=8)`` with a fresh
  HF cache.

For ``big``, curl and aria2c are followed by ``b3sum --check`` against the file's blake3, timed
together with the download: each such run gives a raw row (the download alone) and a verified
row (download + check).

The two hf tools talk to tests/hfhub.py's HubServer, run in its own process (as in
bench/hf_bench.py) so that it never competes with a client for the GIL. Every file of its
repositories is stored as LFS and its resolve answers redirect (302) to nginx, as the real Hub
redirects LFS files to its CDN: the hub answers metadata only and the bytes come from the same
nginx as for the other tools. Both hf rows still pay for the hub's Python HTTP server on the
same CPUs, once or twice per file.

Method: every round runs every tool once on a set (the starting tool rotates each round), after
one untimed warm-up round on 4 small files (bytecode caches, first-run effects). Before every
timed command: ``os.sync()`` and a --sleep seconds pause. Wall time is time.perf_counter around
the subprocess. Peak RSS is the tool process's ru_maxrss as GNU time reads it with wait4: a
process forked straight from this benchmark inherits the benchmark's own high-water mark in
ru_maxrss (vfork + exec), so os.wait4 here would report at least our own RSS; GNU time forks
from a 1 MiB process. For a tool that forks, it is the largest single process (none of these
fork). CPU seconds (user + system, children included) come from os.wait4 of that process. Every
run's output is checked after timing: the exact set of files, each file's size, and one file's
sha256 against the served data (a different file each round); a failed, timed-out or incomplete
run is reported as a failure with its output's tail and never counted in the timings.

Each run's folder is new, and is kept until the benchmark ends: on ext4 mounted with
``discard`` (as these VMs are), deleting files makes the file creations of the next seconds up to
ten times slower (curl's 2000 small files: 0.22 s in a quiet filesystem, 1-2 s right after a
run folder was deleted), which would hide every tool's own per-file cost behind the disk's. The
sets whose runs all fit on the disk keep them and run first; the others (the 2 GiB file) delete
each run after its check and run last.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
JOBS = 8  # the parallelism of every tool that has the knob (modelsync's default --jobs)
RSS_GOAL = 120_000_000  # bytes: the goal "peak RSS < 120 MB"
DEFAULT_DATA = Path("/tmp/modelsync-transfer-bench")
WARMUP = "warmup"

TOOLS = ("modelsync", "modelsync-hf", "curl", "curl-z8", "aria2c", "pooch", "snapshot_download")
ROWS = ("modelsync", "modelsync-hf", "curl", "curl+b3sum", "curl-z8", "aria2c", "aria2c+b3sum", "pooch",
        "snapshot_download")
# set -> [(row that modelsync is compared with, the largest allowed modelsync / row ratio)]
GOALS = {
    "big": [("aria2c+b3sum", 1.0), ("curl+b3sum", 1.5)],
    "mid": [("curl-z8", 1.2)],
    "small": [("curl-z8", 2.0)],
}
# binary -> the Debian/Ubuntu package that has it
PACKAGES = {"nginx": "nginx-light", "aria2c": "aria2", "curl": "curl", "b3sum": "b3sum", "time": "time"}
ARIA2_FLAGS = [
    "--no-conf=true", "--allow-overwrite=false", "--auto-file-renaming=false", "--console-log-level=warn",
    "--summary-interval=0", "--download-result=hide", "--file-allocation=none",
]
CURL_FLAGS = ["-q", "--silent", "--show-error", "--fail"]  # -q (first): no ~/.curlrc

POOCH_PY = """\
import json, logging, sys
from concurrent.futures import ThreadPoolExecutor
import pooch
pooch.get_logger().setLevel(logging.WARNING)
jobs_file, folder, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(jobs_file) as handle:
    jobs = json.load(handle)
def fetch(job):
    return pooch.retrieve(job["url"], known_hash="sha256:" + job["sha256"], fname=job["name"], path=folder,
                          progressbar=False)
with ThreadPoolExecutor(threads) as pool:
    for _ in pool.map(fetch, jobs):
        pass
"""
SNAPSHOT_PY = """\
import sys
from huggingface_hub import snapshot_download
repo, revision, cache_dir, endpoint, workers = sys.argv[1:]
snapshot_download(repo, revision=revision, cache_dir=cache_dir, endpoint=endpoint, max_workers=int(workers))
"""


class RunFailed(Exception):
    """A tool run that did not produce the expected files: reported, never timed."""


# --------------------------------------------------------------------------
# Set-up: the tools


def find_binary(name: str) -> str | None:
    """Also look in the sbin folders, which a non-root PATH often lacks (nginx lives there)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def ensure_binaries(names: list[str]) -> dict[str, str]:
    """Install missing binaries from the distribution (saying so), so that one command runs it all."""
    missing = [name for name in names if not find_binary(name)]
    if missing:
        packages = [PACKAGES[name] for name in missing]
        if not shutil.which("apt-get"):
            sys.exit(f"missing {', '.join(missing)}: install the packages {' '.join(packages)}, then run again")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        if sudo and not shutil.which("sudo"):
            sys.exit(f"missing {', '.join(missing)}: as root, run apt-get install -y {' '.join(packages)}")
        apt = [*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        print(f"{', '.join(missing)} not found: installing {' '.join(packages)} with "
              f"{shlex.join([*apt, 'install', '-y', *packages])}", flush=True)
        if subprocess.run([*apt, "install", "-y", *packages], check=False).returncode != 0:
            print("apt-get install failed; updating the package lists and trying again", flush=True)
            subprocess.run([*apt, "update"], check=False)
            subprocess.run([*apt, "install", "-y", *packages], check=False)
    found = {name: find_binary(name) for name in names}
    if not all(found.values()):
        sys.exit(f"still missing after apt-get: {', '.join(n for n, p in found.items() if not p)}")
    return {name: path for name, path in found.items() if path}


def python_tools(tools: list[str]) -> list[str]:
    """Drop the Python tools whose packages are missing, with a note that says how to get them."""
    needs = {
        "pooch": ["pooch"],
        "snapshot_download": ["huggingface_hub", "pytest"],  # pytest: tests/hfhub.py imports it
        "modelsync-hf": ["huggingface_hub", "pytest"],
    }
    kept = []
    for tool in tools:
        lacking = [m for m in needs.get(tool, []) if importlib.util.find_spec(m) is None]
        if lacking:
            print(f"note: skipping {tool}: {', '.join(lacking)} not installed for {sys.executable} "
                  f"(pip install {' '.join(lacking)})", flush=True)
        else:
            kept.append(tool)
    return kept


def release_install(folder: Path) -> tuple[str, Path]:
    """modelsync as users get it, to time: this checkout built as a wheel and installed (not
    editable) into a fresh venv at ``folder``, which finds its dependencies in this environment.

    Why not this environment's own `modelsync`: in a development checkout that is an editable
    install, whose import hook (a .pth file run at every interpreter start) costs ~20 ms a process,
    a tenth of the small set's whole time, which no installed modelsync pays. Returns the venv's
    `modelsync` command, written as pip writes console scripts, and the installed package."""
    import sysconfig
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder)
    python = folder / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        check=True, capture_output=True, text=True).stdout.strip())
    # The dependencies (blake3, requests, ...): this environment's packages, on the path after the venv's own.
    # A .pth file inside a folder added this way is not run, so the editable install's hook stays out.
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site_packages / "_bench_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                           "--target", str(site_packages), str(ROOT)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"could not install modelsync from {ROOT} for timing:\n{done.stdout}{done.stderr}")
    shutil.rmtree(site_packages / "bin", ignore_errors=True)  # --target's copy of the console script: ours is below
    # Bytecode as pip writes it on a normal install, by the interpreter that will run it.
    subprocess.run([str(python), "-m", "compileall", "-q", str(site_packages / "modelsync")], check=True)
    exe = folder / "bin" / "modelsync"
    exe.write_text(f"#!{python}\nimport sys\nfrom modelsync.cli.main import run\nif __name__ == '__main__':\n"
                   "    sys.exit(run())\n")
    exe.chmod(0o755)
    found = subprocess.run([str(python), "-c", "import modelsync; print(modelsync.__file__)"],
                           capture_output=True, text=True, cwd=folder).stdout.strip()
    if not found.startswith(str(site_packages)):
        sys.exit(f"the benchmark's venv imports modelsync from {found}, not from its own install")
    return str(exe), site_packages / "modelsync"


# --------------------------------------------------------------------------
# The data


@dataclasses.dataclass(frozen=True)
class DataSet:
    """One set of served files, all of one size: a file's size is all a run's check needs besides one sha256."""

    name: str
    folder: Path  # served at /<name>/
    size: int  # bytes per file
    files: dict[str, str]  # file name -> sha256

    @property
    def total(self) -> int:
        return self.size * len(self.files)


def specs(big_size: int) -> dict[str, tuple[int, int]]:
    """set -> (file count, bytes per file)."""
    return {"big": (1, big_size), "mid": (200, MIB), "small": (2000, 16 * KIB), WARMUP: (4, 16 * KIB)}


def ensure_data(data: Path, name: str, count: int, size: int) -> DataSet:
    """Reuse data/files/<name>/ when its manifest matches and every file has its size, else write it anew.

    Random bytes, so that nothing on the way can compress or deduplicate them. The manifest is
    written last, so an interrupted generation is redone."""
    folder, manifest = data / "files" / name, data / "files" / f"{name}.json"
    try:
        saved = json.loads(manifest.read_text(encoding="utf-8"))
        if saved["size"] == size and len(saved["files"]) == count and all(
            (folder / f).stat().st_size == size for f in saved["files"]
        ):
            return DataSet(name, folder, size, saved["files"])
    except (OSError, ValueError, KeyError):
        pass
    print(f"generating {name}: {count} x {fmt_size(size)} of random bytes in {folder}", flush=True)
    manifest.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    files = {}
    for i in range(count):
        fname = f"{name}-{i:04d}.bin"
        digest = hashlib.sha256()
        with open(folder / fname, "wb") as out:
            left = size
            while left:
                block = os.urandom(min(left, 16 * MIB))
                out.write(block)
                digest.update(block)
                left -= len(block)
        files[fname] = digest.hexdigest()
    manifest.write_text(json.dumps({"size": size, "files": files}), encoding="utf-8")
    return DataSet(name, folder, size, files)


def link_cdn(data: Path, sets: list[DataSet]) -> None:
    """Name every file by its sha256 under data/cdn/: nginx answers the hub's LFS redirects from there."""
    cdn = data / "cdn"
    cdn.mkdir(exist_ok=True)
    for ds in sets:
        for fname, sha256 in ds.files.items():
            link, target = cdn / sha256, ds.folder / fname
            if not (link.is_symlink() and os.readlink(link) == str(target)):
                link.unlink(missing_ok=True)
                link.symlink_to(target)


def blake3_sums(b3sum: str, ds: DataSet) -> dict[str, str]:
    """file name -> blake3, for the `b3sum --check` step (computed by b3sum itself, not by modelsync)."""
    done = subprocess.run([b3sum, *sorted(ds.files)], cwd=ds.folder, capture_output=True, text=True, check=True)
    return {name: digest for digest, name in (line.split(None, 1) for line in done.stdout.splitlines())}


def sha256_file(path: Path) -> str:
    """Streamed, so that checking a 2 GiB file keeps this process small (its RSS is every child's floor)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# The servers: nginx, and the test hub in its own process


def free_port() -> int:
    """A port nobody listens on now; the lock pins URLs with it, so it stays the same for the whole invocation."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_conf(nginx: str, data: Path, folder: Path, port: int) -> str:
    """A configuration that touches nothing outside `folder` (pid, logs, temp paths) and serves data/."""
    built = subprocess.run([nginx, "-V"], check=False, capture_output=True, text=True).stderr
    temp_paths = [f'    client_body_temp_path "{folder / "tmp" / "body"}";']
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):  # each default is under /var/lib/nginx
        if f"--without-http_{module}_module" not in built:
            temp_paths.append(f'    {module}_temp_path "{folder / "tmp" / module}";')
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read what this benchmark wrote
    return f"""\
daemon off;
master_process on;
worker_processes auto;
pid "{folder / 'nginx.pid'}";
error_log "{folder / 'error.log'}" warn;
{user}events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
{chr(10).join(temp_paths)}
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root "{data / 'files'}";
        location ~ "^/cdn-lfs/([0-9a-f]{{64}})/" {{
            alias "{data / 'cdn'}/$1";
        }}
    }}
}}
"""


def start_nginx(nginx: str, data: Path, folder: Path) -> tuple[subprocess.Popen, str]:
    """Start nginx in the foreground on a free port; return it and its endpoint once it serves a file."""
    (folder / "tmp").mkdir(parents=True)
    for _ in range(3):  # a port found free may be taken before nginx binds it
        port = free_port()
        conf = folder / "nginx.conf"
        conf.write_text(nginx_conf(nginx, data, folder, port), encoding="utf-8")
        with open(folder / "stderr.log", "ab") as log:
            proc = subprocess.Popen([nginx, "-p", str(folder), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True)
        endpoint = f"http://127.0.0.1:{port}"
        if wait_served(proc, f"{endpoint}/{WARMUP}/{WARMUP}-0000.bin"):
            return proc, endpoint
        stop_process(proc)
    logs = "".join(tail(folder / name) for name in ("stderr.log", "error.log"))
    sys.exit(f"nginx did not start:\n{logs}")


def wait_served(proc: subprocess.Popen, url: str, seconds: float = 10.0) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(url, timeout=2) as answer:
                answer.read()
                return True
        except OSError:
            time.sleep(0.1)
    return False


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM (nginx: fast shutdown), then SIGKILL to the whole group (nginx's workers too)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid)
            proc.wait()


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def serve_hub(data: Path, names: list[str], cdn: str) -> None:
    """The hub process: one repository bench/<set> per set, every file LFS, redirected to nginx.

    Prints {"endpoint", "commits"} as one JSON line, then runs until its stdin closes. The
    hub is tuned as in bench/hf_bench.py (blob ids computed once, backlog 128, TCP_NODELAY)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import hfhub  # the test server (and pytest, which it imports), in this process only
    from hf_bench import tune_hub_server  # bench/ is this script's folder: on sys.path

    tune_hub_server(hfhub)

    hub = hfhub.HubServer(lfs_redirect=True).start()
    hub.cdn_endpoint = cdn  # the LFS redirects point at nginx's /cdn-lfs/<sha256>/<name>
    commits = {}
    for name in names:
        folder = data / "files" / name
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
        commits[name] = hub.add_repo(f"bench/{name}", files, lfs=set(files))
        for blob in hub.repo(f"bench/{name}").commits[commits[name]].files.values():
            _ = blob.oid, blob.etag
    print(json.dumps({"endpoint": hub.endpoint, "commits": commits}), flush=True)
    sys.stdin.read()
    hub.stop()


def start_hub(data: Path, names: list[str], cdn: str, log: Path) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """Run serve_hub in a process of its own; return it, its endpoint and each set's commit."""
    with open(log, "wb") as errors:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-hub", str(data), "--hub-sets", ",".join(names), "--cdn", cdn],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        stop_hub(proc)
        sys.exit(f"the test hub did not start:\n{tail(log)}")
    hello = json.loads(line)
    return proc, hello["endpoint"], hello["commits"]


def stop_hub(proc: subprocess.Popen) -> None:
    """Closing its stdin ends the hub; a hub that does not go is killed."""
    if proc.stdin:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        stop_process(proc)


# --------------------------------------------------------------------------
# modelsync projects, locked once per set


def write_url_project(folder: Path, ds: DataSet, endpoint: str) -> None:
    """One `[models.NAME] url = ...` per file: what a project that pins files on a plain web server declares."""
    folder.mkdir(parents=True)
    tables = [f'[models.{Path(n).stem}]\nurl = "{endpoint}/{ds.name}/{n}"\n' for n in ds.files]
    (folder / "models.toml").write_text("\n".join(tables), encoding="utf-8")


def write_hf_project(folder: Path, ds: DataSet, commit: str) -> None:
    """One model for the whole repository bench/<set>, as snapshot_download fetches it."""
    folder.mkdir(parents=True)
    (folder / "models.toml").write_text(
        f'[models.{ds.name}]\nhf = "bench/{ds.name}"\nrevision = "{commit}"\nfiles = ["*"]\n', encoding="utf-8"
    )


def lock_project(exe: str, project: Path, env: dict[str, str], timeout: float) -> str | None:
    """`modelsync lock` into a throwaway cache (lock downloads to pin); the error text, or None."""
    cache = project.parent / f"{project.name}-lock-cache"
    env = dict(env, MODELSYNC_CACHE_DIR=str(cache), HF_HOME=str(cache / "hf-home"))
    try:
        done = subprocess.run([exe, "lock", "-q", "--project", str(project)], check=False, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"modelsync lock timed out after {timeout:g} s"
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        return f"modelsync lock failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
    return None


# --------------------------------------------------------------------------
# One run of one tool


@dataclasses.dataclass
class Context:
    """What every run needs: the binaries, the servers, the locked projects."""

    bins: dict[str, str]
    modelsync: str
    nginx: str
    hub: str
    commits: dict[str, str]
    templates: dict[tuple[str, str], Path]  # (set, tool) -> locked project
    blake3: dict[str, str]  # big file name -> blake3
    env: dict[str, str]


@dataclasses.dataclass
class Run:
    steps: list[list[str]]  # run one after the other, timed together
    env: dict[str, str]
    result: Path  # the folder that must hold the files
    expected: dict[str, str]  # path relative to result -> file name in the data set
    own: frozenset[str] = frozenset()  # files of the tool's own that may be there too


def base_env() -> dict[str, str]:
    """No user settings of any tool (caches, endpoints, tokens, proxies); quiet Python clients."""
    drop = ("MODELSYNC_", "HF_", "HUGGING_FACE_", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(drop) and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        and k not in ("TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME", "CURL_HOME")
    }
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    return env


def rows_of(tool: str, set_name: str) -> list[str]:
    """The report rows one run of `tool` gives: for big, curl and aria2c also give a verified row."""
    if set_name == "big" and tool in ("curl", "aria2c"):
        return [tool, f"{tool}+b3sum"]
    return [tool]


def applies(tool: str, set_name: str) -> bool:
    """Whether `tool` has a row for the set."""
    return not (tool == "curl-z8" and set_name == "big")  # one file: nothing to parallelise


def labels(set_name: str) -> dict[str, str]:
    """Row id -> what the report calls it: the tool and the flags that matter for the set."""
    big = set_name == "big"
    aria2 = "aria2c -x8 -s8 -k1M" if big else f"aria2c -j{JOBS}"
    return {
        "modelsync": "modelsync sync (url)",
        "modelsync-hf": "modelsync sync (hf)",
        "curl": "curl" if big else "curl (sequential)",
        "curl+b3sum": "curl + b3sum",
        "curl-z8": f"curl -Z --parallel-max {JOBS}",
        "aria2c": aria2,
        "aria2c+b3sum": f"{aria2} + b3sum",
        "pooch": "pooch.retrieve" if big else f"pooch.retrieve ({JOBS} threads)",
        "snapshot_download": f"snapshot_download(max_workers={JOBS})",
    }


def plan(tool: str, ds: DataSet, run_dir: Path, ctx: Context) -> Run:
    """The commands of one run, its environment, and where its files must land (set up outside the timing)."""
    names = list(ds.files)
    urls = [f"{ctx.nginx}/{ds.name}/{n}" for n in names]
    flat = {n: n for n in names}
    out = run_dir / "out"
    env = dict(ctx.env)
    if tool in ("modelsync", "modelsync-hf", "snapshot_download"):  # an empty HF cache: nothing to reuse
        env.update(HF_HOME=str(run_dir / "hf-home"), HF_HUB_CACHE=str(run_dir / "hf-cache"))
    if tool in ("modelsync", "modelsync-hf"):
        project = run_dir / "project"
        project.mkdir()
        for name in ("models.toml", "models.lock"):
            shutil.copyfile(ctx.templates[(ds.name, tool)] / name, project / name)
        env["MODELSYNC_CACHE_DIR"] = str(run_dir / "cache")
        if tool == "modelsync-hf":
            env["HF_ENDPOINT"] = ctx.hub
            expected = {f"{ds.name}/{n}": n for n in names}
        else:
            expected = {f"{Path(n).stem}/{n}": n for n in names}
        command = [ctx.modelsync, "sync", "--frozen", "-q", "--project", str(project)]
        return Run([command], env, project / "models", expected, frozenset({".gitignore"}))
    if tool == "snapshot_download":
        commit = ctx.commits[ds.name]
        command = [sys.executable, "-c", SNAPSHOT_PY, f"bench/{ds.name}", commit, str(run_dir / "hf-cache"),
                   ctx.hub, str(JOBS)]
        return Run([command], env, run_dir / "hf-cache" / f"models--bench--{ds.name}" / "snapshots" / commit, flat)
    if tool == "pooch":
        jobs = run_dir / "pooch.json"
        listing = [{"url": u, "name": n, "sha256": ds.files[n]} for u, n in zip(urls, names, strict=True)]
        jobs.write_text(json.dumps(listing))
        return Run([[sys.executable, "-c", POOCH_PY, str(jobs), str(out), str(JOBS)]], env, out, flat)

    out.mkdir()
    if tool in ("curl", "curl-z8"):
        config = run_dir / "curl.config"
        config.write_text("".join(f'url = "{u}"\noutput = "{out / n}"\n' for u, n in zip(urls, names, strict=True)))
        parallel = ["--parallel", "--parallel-max", str(JOBS)] if tool == "curl-z8" else []
        command = [ctx.bins["curl"], *CURL_FLAGS, *parallel, "--config", str(config)]
    elif ds.name == "big":  # aria2c, one file: split over 8 connections
        command = [ctx.bins["aria2c"], *ARIA2_FLAGS, "-x8", "-s8", "-k1M", "--dir", str(out), "--out", names[0],
                   urls[0]]
    else:  # aria2c, many files: 8 at a time
        listing = run_dir / "aria2.input"
        listing.write_text("".join(f"{u}\n  out={n}\n" for u, n in zip(urls, names, strict=True)))
        command = [ctx.bins["aria2c"], *ARIA2_FLAGS, f"-j{JOBS}", "--dir", str(out), "--input-file", str(listing)]
    steps = [command]
    if ds.name == "big":
        sums = run_dir / "b3sums"
        sums.write_text("".join(f"{ctx.blake3[n]}  {out / n}\n" for n in names))
        steps.append([ctx.bins["b3sum"], "--check", str(sums)])
    return Run(steps, env, out, flat)


def settle(seconds: float) -> None:
    """Start every timed command from the same state: the last run's dirty pages written back, a pause after it."""
    os.sync()
    time.sleep(seconds)


def timed_run(run: Run, run_dir: Path, time_bin: str, timeout: float) -> tuple[list[float], list[int], list[float]]:
    """Run the steps one after the other, timed together.

    Returns the wall seconds from the start to the end of each step, and each step's peak RSS
    (KiB, GNU time's %M) and CPU seconds (user + system from os.wait4, children included)."""
    ends: list[float] = []
    rss: list[int] = []
    cpu: list[float] = []
    log = run_dir / "output.log"
    start = time.perf_counter()
    for i, argv in enumerate(run.steps):
        rss_file = run_dir / f"rss-{i}"
        with open(log, "ab") as out:
            proc = subprocess.Popen([time_bin, "-f", "%M", "-o", str(rss_file), *argv], env=run.env, cwd=run_dir,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
        expired = threading.Event()
        timer = threading.Timer(timeout, expire, (proc.pid, expired))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: take the tool down with us
            kill_group(proc.pid)
            os.waitpid(proc.pid, 0)
            raise
        finally:
            timer.cancel()
        ends.append(time.perf_counter() - start)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        name = Path(argv[0]).name
        if expired.is_set():
            raise RunFailed(f"{name} timed out after {timeout:g} s (killed)\n{tail(log)}")
        if code != 0:
            raise RunFailed(f"{name} exited with {code}\n{tail(log)}")
        rss.append(int(rss_file.read_text().split()[-1]))
        cpu.append(usage.ru_utime + usage.ru_stime)
    return ends, rss, cpu


def expire(pid: int, expired: threading.Event) -> None:
    """A command's time is up: mark it, and kill it with its whole group (GNU time and the tool)."""
    expired.set()
    kill_group(pid)


def check_output(run: Run, ds: DataSet, sample: int) -> None:
    """The exact set of files, each of the right size, and one of them (`sample`) byte-exact by sha256."""
    if not run.result.is_dir():
        raise RunFailed(f"{run.result} was not created")
    found = {p.relative_to(run.result).as_posix(): p for p in run.result.rglob("*") if p.is_file()}
    found = {rel: path for rel, path in found.items() if rel not in run.own}
    if set(found) != set(run.expected):
        missing, extra = sorted(set(run.expected) - set(found)), sorted(set(found) - set(run.expected))
        raise RunFailed(f"{len(found)} files in {run.result}, expected {len(run.expected)}; "
                        f"missing {missing[:3]}, unexpected {extra[:3]}")
    total = 0
    for rel, path in found.items():
        size = path.stat().st_size  # through symlinks (snapshot_download)
        total += size
        if size != ds.size:
            raise RunFailed(f"{rel}: {size} bytes, expected {ds.size}")
    if total != ds.total:
        raise RunFailed(f"{total} bytes in all, expected {ds.total}")
    rel = sorted(run.expected)[sample % len(run.expected)]
    if sha256_file(found[rel]) != ds.files[run.expected[rel]]:
        raise RunFailed(f"{rel}: its sha256 differs from the served file's")


def measure(tool: str, ds: DataSet, ctx: Context, run_dir: Path, args: argparse.Namespace,
            sample: int, keep: bool) -> tuple[list[dict], str]:
    """One settled, timed, checked run of `tool`: a sample per report row (failed or not), and its commands.

    With `keep` the run's folder stays until the benchmark ends: deleting files on this kind of
    disk (ext4 mounted with `discard`) makes the next runs' file creation up to 10x slower for a
    while, which hides a tool's own per-file cost behind the filesystem's."""
    rows = rows_of(tool, ds.name)
    run_dir.mkdir(parents=True)
    run = plan(tool, ds, run_dir, ctx)
    shown = " && ".join(show(command, run.env, run_dir, ctx) for command in run.steps)
    try:
        settle(args.sleep)
        load = os.getloadavg()[0]
        ends, rss, cpu = timed_run(run, run_dir, ctx.bins["time"], args.timeout)
        check_output(run, ds, sample)
        samples = [
            {"row": row, "ok": True, "seconds": ends[k], "rss_kib": max(rss[: k + 1]), "cpu_s": sum(cpu[: k + 1]),
             "load1_before": load}
            for k, row in enumerate(rows)
        ]
    except RunFailed as err:
        samples = [{"row": row, "ok": False, "error": str(err)} for row in rows]
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    return samples, shown


def rotate(items: list[str], by: int) -> list[str]:
    """The tools of round `by`: each tool goes first in turn, so no tool always runs right after another."""
    by %= max(1, len(items))
    return items[by:] + items[:by]


def show(command: list[str], env: dict[str, str], run_dir: Path, ctx: Context) -> str:
    """A command as the report shows it: with the variables it gets beyond the common ones, fresh folders as
    $RUN, the scripts by name."""
    scripts = {POOCH_PY: "\"$POOCH_PY\"", SNAPSHOT_PY: "\"$SNAPSHOT_PY\""}
    own = [f"{k}={shlex.quote(v)}" for k, v in env.items() if ctx.env.get(k) != v]
    text = " ".join([*own, *(scripts.get(a) or shlex.quote(a) for a in command)])
    for path, name in ((str(run_dir), "$RUN"), (ctx.modelsync, "modelsync"), (sys.executable, "python")):
        text = text.replace(path, name)
    for binary, path in ctx.bins.items():
        text = text.replace(path + " ", binary + " ")
    return text


# --------------------------------------------------------------------------
# The report


def gist(error: str) -> str:
    """One line for the summary: the error's first line, and the first exception or `error:` line of its output."""
    first, *rest = error.splitlines() or [""]
    cause = next((line.strip() for line in rest if re.match(r"\s*(\w+(Error|Exception)\b|error:)", line)), "")
    return f"{first} {cause}".strip()


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def fmt_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" or size == int(size) else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def first_version(argv: list[str]) -> str:
    """The first version number that `argv` (a --version or -v call) prints, on stdout or stderr."""
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    found = re.search(r"\d+\.\d+(?:\.\d+)?", done.stdout + done.stderr)
    return found.group(0) if found else "?"


def modelsync_source() -> Path:
    """The modelsync package that is timed: this checkout's (``release_install`` installs it)."""
    return ROOT / "modelsync"


def source_version(package: Path) -> str:
    """The commit of the checkout being measured, plus "dirty" if it has local changes."""
    def git(*argv: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(package), *argv], check=False, capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "not a git checkout"
    if not git("status", "--porcelain"):
        return commit
    mine = git("status", "--porcelain", "--", ".")
    return f"{commit} dirty ({'modelsync/ changed' if mine else 'modelsync/ unchanged'})"


def source_digest(package: Path) -> str:
    """A digest of the package's code: others may edit it while the benchmark runs, and the report says so."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(f"{path.relative_to(package)}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> str:
    """CPU model, cores, RAM, distribution and kernel, for the report's header."""
    def field(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":" if ":" in line else "=", 1)[1].strip().strip('"')
        except OSError:
            pass
        return "?"

    mem = field("/proc/meminfo", "MemTotal")
    ram = f"{int(mem.split()[0]) / MIB:.1f} GiB RAM" if mem != "?" else "? RAM"
    return (f"{field('/proc/cpuinfo', 'model name')}, {os.cpu_count()} cores, {ram}; "
            f"{field('/etc/os-release', 'PRETTY_NAME')}, kernel {platform.release()}")


def filesystem(path: Path) -> str:
    """The file system type that `path` is on (ext4, xfs, tmpfs, ...): it matters for writing many files."""
    best = ("", "?")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, fstype)
    return best[1]


def header(ctx_bins: dict[str, str], package: Path, data: Path, args: argparse.Namespace,
           tools: list[str]) -> list[str]:
    """What a reader needs to judge the figures: where, when, which code and tools, how measured."""

    def py(name: str) -> str:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{name} not installed"

    versions = [f"{name} {first_version([path, '--version' if name != 'nginx' else '-v'])}"
                for name, path in ctx_bins.items() if name != "time"]
    versions += [py(n) for n in ("modelsync", "requests", "pooch", "huggingface_hub")]
    return [
        "# modelsync transfer benchmark",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {machine()}",
        (f"- modelsync: {source_version(package)}, code digest {source_digest(package)} ({package}), installed "
         "for the runs as a wheel (not editable) into a fresh venv that finds its dependencies in this environment"),
        f"- tools: {', '.join(versions)}; Python {platform.python_version()}",
        f"- command: `{shlex.join([sys.executable, *sys.argv])}`",
        (f"- data: {data} ({filesystem(data)}); runs: {args.runs} per tool, interleaved, the first tool rotating "
         f"each round, after 1 untimed warm-up round; `os.sync()` + {args.sleep:g} s sleep before every timed "
         f"command; {JOBS}-way parallel wherever a tool has the knob"),
        f"- tools run: {', '.join(tools)}",
        ("- servers: nginx on 127.0.0.1 (sendfile on, keepalive_requests 1000000, access_log off, worker_processes "
         "auto); for the hf rows, tests/hfhub.py in its own process answers the metadata and redirects every file "
         "(all LFS) to that nginx"),
        ("- wall time: perf_counter around the process; peak RSS: the process's ru_maxrss (GNU time, wait4), "
         "largest over the runs (the largest single process: modelsync's worker processes, forked for mid and "
         "small, each count on their own; docs/performance.md gives their sum); CPU: user + system of the "
         "process and its children, median; a verified row (+ b3sum) times the download and "
         "`b3sum --check` together, and its RSS is b3sum's when larger: b3sum memory-maps the file, so its RSS "
         "counts the file's pages (page cache, not memory it allocates)"),
    ]


def summarize(samples: list[dict]) -> dict | None:
    """Median, min, max, peak RSS and median CPU over a row's successful runs; None when none succeeded."""
    ok = [s for s in samples if s["ok"]]
    if not ok:
        return None
    secs = [s["seconds"] for s in ok]
    return {
        "ok": len(ok), "runs": len(samples), "median": statistics.median(secs), "min": min(secs), "max": max(secs),
        "rss_kib": max(s["rss_kib"] for s in ok), "cpu": statistics.median(s["cpu_s"] for s in ok),
    }


def set_report(ds: DataSet, results: dict[str, list[dict]], notes: list[str], commands: dict[str, str]) -> list[str]:
    """The table, the goals and the commands of one set, all from this invocation's runs."""
    names = labels(ds.name)
    stats = {row: summarize(samples) for row, samples in results.items()}
    base = stats.get("modelsync")
    lines = [
        f"## {ds.name}: {len(ds.files)} x {fmt_size(ds.size)} = {fmt_size(ds.total)}",
        "",
        ("| tool | runs ok | median s | min s | max s | MiB/s | peak RSS MiB | CPU s | tool / modelsync | "
         "modelsync / tool |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in ROWS:
        if row not in results:
            continue
        s, n = stats[row], len(results[row])
        if s is None:
            lines.append(f"| {names[row]} | 0/{n} | failed | | | | | | | |")
            continue
        ratio = f"{s['median'] / base['median']:.2f} | {base['median'] / s['median']:.2f}" if base else "- | -"
        lines.append(
            f"| {names[row]} | {s['ok']}/{n} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} | "
            f"{ds.total / MIB / s['median']:.0f} | {s['rss_kib'] / KIB:.1f} | {s['cpu']:.2f} | {ratio} |"
        )
    lines += ["", "goals:", ""]
    lines += [f"- {line}" for line in goals(ds.name, results, stats)]
    failures = [(row, s["error"]) for row, samples in results.items() for s in samples if not s["ok"]]
    if failures or notes:
        lines += ["", "problems:", ""]
        lines += [f"- {note}" for note in notes]
        lines += [f"- {names[row]} failed: {gist(error)}" for row, error in failures]
    lines += ["", "commands (first round; `$RUN` is the run's fresh folder):", ""]
    lines += [f"- {tool}: `{text}`" for tool, text in commands.items()]
    return lines + [""]


def goals(set_name: str, results: dict[str, list[dict]], stats: dict[str, dict | None]) -> list[str]:
    """Each goal for the set, met or not, from this invocation's medians; never judged on failed runs."""
    names = labels(set_name)
    out = []

    def unusable(row: str) -> str | None:
        if row not in results:
            return f"{names.get(row, row)} not measured"
        bad = sum(1 for s in results[row] if not s["ok"])
        return f"{names[row]} had {bad} failed run(s) of {len(results[row])}" if bad else None

    for row, limit in GOALS.get(set_name, []):
        what = f"{set_name}: modelsync <= {limit:.1f}x {names[row]}"
        problem = unusable("modelsync") or unusable(row)
        if problem:
            out.append(f"{what}: cannot judge ({problem})")
            continue
        ours, theirs = stats["modelsync"]["median"], stats[row]["median"]  # type: ignore[index]
        ratio = ours / theirs
        out.append(f"{what}: {ratio:.2f}x ({ours:.3f} s vs {theirs:.3f} s): {'met' if ratio <= limit else 'NOT met'}")
    for row in ("modelsync", "modelsync-hf"):
        summary = stats.get(row)
        if summary is None:
            continue
        peak = summary["rss_kib"] * KIB
        what = f"{set_name}: {names[row]} peak RSS < {RSS_GOAL / 1e6:.0f} MB"
        verdict = "NOT met" if peak >= RSS_GOAL else f"cannot judge ({unusable(row)})" if unusable(row) else "met"
        out.append(f"{what}: {peak / 1e6:.1f} MB ({peak / MIB:.1f} MiB): {verdict}")
    return out


# --------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool per set")
    parser.add_argument("--sets", default="big,mid,small", help="comma-separated: big, mid, small")
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, from: " + ", ".join(TOOLS))
    parser.add_argument("--big-size", type=int, default=2 * GIB, help="bytes of the big set's one file")
    parser.add_argument("--sleep", type=float, default=4.0, help="seconds to sleep after os.sync() before each run")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a command is killed (a failure)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="where the data sets live (kept) and runs go")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this JSON file")
    parser.add_argument("--serve-hub", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hub-sets", help=argparse.SUPPRESS)
    parser.add_argument("--cdn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_hub:
        return args
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not args.sets or any(s not in ("big", "mid", "small") for s in args.sets):
        parser.error("--sets: choose from big, mid, small")
    if not args.tools or any(t not in TOOLS for t in args.tools):
        parser.error(f"--tools: choose from {', '.join(TOOLS)}")
    if args.runs < 1 or args.big_size < 1 or args.sleep < 0 or args.timeout <= 0:
        parser.error("--runs, --big-size and --timeout must be positive, --sleep not negative")
    return args


def needed_binaries(sets: list[str], tools: list[str]) -> list[str]:
    """Only what the chosen sets and tools use; GNU time always (it reads each tool's peak RSS)."""
    need = ["nginx", "time"]
    if {"curl", "curl-z8"} & set(tools):
        need.append("curl")
    if "aria2c" in tools:
        need.append("aria2c")
    if "big" in sets and {"curl", "aria2c"} & set(tools):
        need.append("b3sum")
    return need


def on_sigterm(signum: int, frame: object) -> None:
    print("terminated: stopping nginx and the hub, removing the run folders", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C


def main() -> None:
    args = parse_args()
    if args.serve_hub:
        return serve_hub(args.serve_hub, args.hub_sets.split(","), args.cdn)
    signal.signal(signal.SIGTERM, on_sigterm)
    began = time.monotonic()
    tools = python_tools(args.tools)
    if not tools:
        sys.exit("no tool left to run")
    bins = ensure_binaries(needed_binaries(args.sets, tools))
    data = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    package = modelsync_source()
    digest_before = source_digest(package)

    shape = specs(args.big_size)
    sets = [ensure_data(data, name, *shape[name]) for name in [WARMUP, *args.sets]]
    free = shutil.disk_usage(data).free
    need = max(ds.total for ds in sets) * 2 + GIB  # a run's files and a lock's throwaway cache, plus room
    if free < need:
        sys.exit(f"{data}: {fmt_size(free)} free, the largest set needs about {fmt_size(need)}")
    link_cdn(data, sets)
    # Sets whose runs all fit on the disk keep them until the end (see measure) and go first;
    # the others delete each run after its check, so their deletions come after every kept run.
    budget = free - need
    kept = {WARMUP}
    for ds in sorted(sets[1:], key=lambda d: d.total):
        cost = ds.total * args.runs * len(tools) * 2  # hf rows and verified rows: at most twice the tools
        if cost <= budget:
            kept.add(ds.name)
            budget -= cost
    sets = [sets[0]] + sorted(sets[1:], key=lambda d: d.name not in kept)
    by_name = {ds.name: ds for ds in sets}
    blake3 = blake3_sums(bins["b3sum"], by_name["big"]) if "b3sum" in bins else {}

    work = data / f"work-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    lines = header(bins, package, data, args, tools)
    lines.append("- run folders: kept until the end for " + (", ".join(sorted(kept - {WARMUP})) or "no set")
                 + "; deleted after each run's check for " + (", ".join(d.name for d in sets[1:] if d.name not in kept) or "no set")
                 + " (deleting files slows the next file creations on ext4 with discard)")
    print("\n".join(lines), flush=True)
    results: dict[str, dict[str, list[dict]]] = {}
    commands: dict[str, dict[str, str]] = {}
    notes: dict[str, list[str]] = {}
    with contextlib.ExitStack() as stack:
        work.mkdir()
        stack.callback(shutil.rmtree, work, True)
        exe = ""
        if {"modelsync", "modelsync-hf"} & set(tools):
            exe, installed = release_install(work / "modelsync-venv")
            print(f"modelsync: {exe} (this checkout, installed as a wheel: not editable)", flush=True)
            if source_digest(installed) != digest_before:
                sys.exit(f"the installed modelsync (code digest {source_digest(installed)}) is not the code the header "
                         f"names ({digest_before}): the checkout changed meanwhile, or the wheel leaves a module out")
        nginx, endpoint = start_nginx(bins["nginx"], data, work / "nginx")
        stack.callback(stop_process, nginx)
        print(f"nginx: {endpoint} (pid {nginx.pid}, config {work / 'nginx' / 'nginx.conf'})", flush=True)
        hub, commits = "", {}
        if {"snapshot_download", "modelsync-hf"} & set(tools):
            hub_proc, hub, commits = start_hub(data, [ds.name for ds in sets], endpoint, work / "hub.log")
            stack.callback(stop_hub, hub_proc)
            print(f"test hub: {hub} (pid {hub_proc.pid}; file bytes redirected to nginx)", flush=True)

        env = base_env()
        ctx = Context(bins, exe, endpoint, hub, commits, {}, blake3, env)
        tools_of: dict[str, list[str]] = {}
        for ds in sets:
            notes[ds.name], tools_of[ds.name] = [], []
            for tool in [t for t in tools if applies(t, ds.name)]:
                if tool in ("modelsync", "modelsync-hf"):
                    project = work / "projects" / ds.name / tool
                    if tool == "modelsync":
                        write_url_project(project, ds, endpoint)
                    else:
                        write_hf_project(project, ds, commits[ds.name])
                    lock_env = dict(env, HF_ENDPOINT=hub) if tool == "modelsync-hf" else env
                    started = time.monotonic()
                    error = lock_project(exe, project, lock_env, args.timeout)
                    print(f"{ds.name}: modelsync lock for {tool} (not timed): {time.monotonic() - started:.1f} s",
                          flush=True)
                    if error:
                        print(f"{ds.name}: {tool} is left out: {error}", flush=True)
                        notes[ds.name].append(f"{tool} not run: {gist(error)}")
                        continue
                    ctx.templates[(ds.name, tool)] = project
                tools_of[ds.name].append(tool)

        counter = iter(range(1_000_000))

        def one(tool: str, ds: DataSet, label: str, sample: int) -> list[dict]:
            run_dir = work / "runs" / f"{next(counter):05d}-{ds.name}-{tool}"
            samples, shown = measure(tool, ds, ctx, run_dir, args, sample, keep=ds.name in kept)
            commands.setdefault(ds.name, {}).setdefault(tool, shown)
            names = labels(ds.name)
            for s in samples:
                if s["ok"]:
                    print(f"  {label:14} {ds.name:6} {names[s['row']]:36} {s['seconds']:8.3f} s "
                          f"{s['rss_kib'] / KIB:6.1f} MiB {s['cpu_s']:7.2f} CPU s  (load {s['load1_before']:.1f})",
                          flush=True)
                else:
                    first, _, output = s["error"].partition("\n")
                    print(f"  {label:14} {ds.name:6} {names[s['row']]:36} FAILED: {first}", flush=True)
                    if output.strip():
                        print(textwrap.indent(output.strip(), "      | "), flush=True)
            return samples

        warmup = sets[0]
        for tool in tools_of[WARMUP]:
            one(tool, warmup, "warm-up", 0)
        commands.pop(WARMUP, None)
        for ds in sets[1:]:
            results[ds.name] = {row: [] for tool in tools_of[ds.name] for row in rows_of(tool, ds.name)}
            for round_ in range(args.runs):
                for tool in rotate(tools_of[ds.name], round_):
                    for s in one(tool, ds, f"run {round_ + 1}/{args.runs}", round_):
                        results[ds.name][s["row"]].append(s)

    report = lines + [""]
    for ds in sets[1:]:
        report += set_report(ds, results[ds.name], notes[ds.name], commands.get(ds.name, {}))
    for tool, name, script in (("pooch", "POOCH_PY", POOCH_PY), ("snapshot_download", "SNAPSHOT_PY", SNAPSHOT_PY)):
        if tool in tools:
            report += [f"`${name}`:", "", "```python", script.rstrip(), "```", ""]
    if source_digest(package) != digest_before:
        report.append(f"note: modelsync's checkout changed during the benchmark (digest {digest_before} -> "
                      f"{source_digest(package)}); the runs timed the copy installed at the start ({digest_before})")
    report.append(f"the benchmark took {(time.monotonic() - began) / 60:.1f} min")
    text = "\n".join(report) + "\n"
    print("\n" + text, end="", flush=True)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        payload = {"header": lines, "sets": {ds.name: {"files": len(ds.files), "file_size": ds.size}
                                             for ds in sets[1:]},
                   "commands": commands, "results": results}
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # main's clean-up has run: nginx, the hub and the run folders are gone
        sys.exit("interrupted")
