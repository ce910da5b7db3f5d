"""`modelsync sync` against `huggingface_hub.snapshot_download`, cold caches, same local hub.

Two scenarios, both served by the test hub (tests/hfhub.py) running in its own
process, so that the server never competes for the client's GIL:

- ``many``: ``org/many``, 200 small files shaped like a model repository
  (mostly 1-64 KiB, a few up to ~1 MiB; see ``many_files`` below);
- ``big``: ``org/big``, one 256 MiB ``model.safetensors`` of random bytes (LFS).

Each timed run is one fresh subprocess per tool, so both pay interpreter
start-up and imports, writing into a fresh folder:

- modelsync: ``modelsync sync --frozen --jobs 8`` in a fresh copy of a project
  whose models.lock was made once, before timing (``modelsync lock`` against
  the same server, into a throwaway cache), with an empty MODELSYNC_CACHE_DIR
  and an empty HF_HOME / HF_HUB_CACHE (so nothing is reused from a
  Hugging Face cache);
- huggingface_hub: ``python -c "from huggingface_hub import snapshot_download;
  snapshot_download(repo, revision=<commit>, cache_dir=<fresh>, endpoint=...,
  max_workers=8)"`` with HF_HUB_DISABLE_TELEMETRY=1 and HF_HUB_DISABLE_XET=1.

The tools alternate (A B A B ...); before every run the benchmark calls
``os.sync()`` and sleeps (4 s by default) so that each run starts from the
same state, then waits (at most 10 s) for a second in which the machine's CPUs
were at most 25 % busy, since other work on a shared machine skews a run.
One untimed warm-up round comes first (it also fills the bytecode cache).
Every result is verified after its run, outside the timing (file count, total
bytes, the sha256 of every file, and one file compared byte for byte with the
served data). Run folders are deleted only after their run has been timed and
verified.

    python bench/hf_bench.py --runs 5

The test hub is used as it is, with three changes made in the server process
only (see ``serve``), each of which removes a cost that the real Hub does not
have and that would blur the comparison: blob hashes are computed once instead
of on every request, the listen backlog is 128 instead of 5, and responses are
sent with TCP_NODELAY (``--server-nagle`` leaves http.server's default).

Wall time is measured around the subprocess; CPU time (user + system) is the
tool's, from ``os.wait4``; peak RSS is the tool's, from GNU time (``%M``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("modelsync", "snapshot_download")
SCENARIOS = {"many": "org/many", "big": "org/big"}
JOBS = 8
SEED = 20240601

SNAPSHOT_CODE = (
    "import sys\n"
    "from huggingface_hub import snapshot_download\n"
    "repo, revision, cache_dir, endpoint, workers = sys.argv[1:]\n"
    "print(snapshot_download(repo, revision=revision, cache_dir=cache_dir, endpoint=endpoint,"
    " max_workers=int(workers)))\n"
)


# --------------------------------------------------------------------------
# The data


def many_files() -> dict[str, int]:
    """200 paths and sizes shaped like a model repository (deterministic).

    - 6 top-level files: config/tokenizer JSON and text, 1-900 KiB;
    - 178 "small" files of 1-64 KiB (log-uniform), in nested folders;
    - 12 "medium" files of 64-256 KiB;
    - 4 ONNX files of 512 KiB-1 MiB (stored with LFS, as the Hub stores .onnx).
    """
    rng = random.Random(SEED)
    kib = 1024
    sizes = {
        "config.json": 2 * kib,
        "generation_config.json": 1 * kib,
        "tokenizer_config.json": 4 * kib,
        "README.md": 9 * kib,
        "vocab.txt": 226 * kib,
        "tokenizer.json": 900 * kib,
    }
    for i in range(178):
        size = int(2 ** rng.uniform(10, 16))  # 1 KiB .. 64 KiB
        folder = ("assets", "layers", "configs", "adapters")[i % 4]
        sizes[f"{folder}/group_{i // 20:02d}/item_{i:03d}.json"] = size
    for i in range(12):
        sizes[f"extras/table_{i:02d}.npy"] = rng.randrange(64 * kib, 256 * kib)
    for i in range(4):
        sizes[f"onnx/part_{i}.onnx"] = rng.randrange(512 * kib, 1024 * kib)
    assert len(sizes) == 200
    return sizes


def generate(data_dir: Path, big_size: int) -> dict[str, dict[str, dict[str, object]]]:
    """Write the repositories' files under data_dir/<scenario>/; return their manifests."""
    rng = random.Random(SEED + 1)
    manifests: dict[str, dict[str, dict[str, object]]] = {"many": {}, "big": {}}
    for path, size in many_files().items():
        data = rng.randbytes(size)
        target = data_dir / "many" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        manifests["many"][path] = {"size": size, "sha256": hashlib.sha256(data).hexdigest()}
    target = data_dir / "big" / "model.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(target, "wb") as handle:
        left = big_size
        while left:
            block = os.urandom(min(left, 16 << 20))
            handle.write(block)
            digest.update(block)
            left -= len(block)
    manifests["big"]["model.safetensors"] = {"size": big_size, "sha256": digest.hexdigest()}
    return manifests


# --------------------------------------------------------------------------
# The server process: `hf_bench.py --serve DATA_DIR`


def tune_hub_server(hfhub, nagle: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Make the test hub serve as a real server would, so that its own costs are
    not counted against whichever client asks more often."""
    import socketserver
    from http.server import ThreadingHTTPServer

    # The test server recomputes a blob's sha256 (256 MiB for the big file) every time
    # it builds an ETag; the real Hub has it stored. Cache the derived ids.
    for name in ("sha256", "pointer", "oid"):
        cached = functools.cached_property(getattr(hfhub.Blob, name).fget)
        cached.__set_name__(hfhub.Blob, name)
        setattr(hfhub.Blob, name, cached)
    # The default listen backlog (5) can drop connections when 8 workers connect at once.
    ThreadingHTTPServer.request_queue_size = 128
    # http.server sends the headers and the body in two writes; with Nagle's algorithm on,
    # the body of a small file then waits for the client's delayed ACK (~40 ms a request
    # on Linux). Real servers set TCP_NODELAY; so does this one, for a fair comparison.
    socketserver.StreamRequestHandler.disable_nagle_algorithm = not nagle


def serve(data_dir: Path, nagle: bool = False) -> None:
    """Serve data_dir/<scenario>/ as the repositories; print the endpoint and commits; run until stdin closes."""
    sys.path.insert(0, str(ROOT / "tests"))
    import hfhub  # the test server, imported only in this process

    tune_hub_server(hfhub, nagle)
    hub = hfhub.HubServer().start()
    commits = {}
    for scenario, repo in SCENARIOS.items():
        folder = data_dir / scenario
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        commits[repo] = hub.add_repo(repo, files)
        for blob in hub.repo(repo).commits[commits[repo]].files.values():
            _ = blob.oid, blob.etag  # compute the cached ids now
    print(json.dumps({"endpoint": hub.endpoint, "commits": commits}), flush=True)
    sys.stdin.read()  # the benchmark closes our stdin when it is done
    hub.stop()


# --------------------------------------------------------------------------
# Running the tools


def clean_env(pycache: Path, **extra: str) -> dict[str, str]:
    """The environment of every tool run: no user settings of either tool, bytecode cached.

    Both tools read their .pyc files from one PYTHONPYCACHEPREFIX folder (filled by the
    warm-up run), as an installed package would, whatever PYTHONDONTWRITEBYTECODE says
    and without writing into the source tree."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELSYNC_", "HF_", "HUGGING_FACE_", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"))
        and k not in ("TRANSFORMERS_OFFLINE", "XDG_CACHE_HOME")
    }
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", PYTHONPYCACHEPREFIX=str(pycache), **extra)
    return env


def modelsync_exe() -> str:
    beside = Path(sys.executable).parent / "modelsync"
    found = str(beside) if beside.exists() else shutil.which("modelsync")
    if not found:
        sys.exit("modelsync is not installed next to this Python (pip install -e .)")
    return found


def cpu_busy(seconds: float) -> float | None:
    """The fraction of all CPUs busy over the next ``seconds`` (from /proc/stat), or None."""
    def sample() -> tuple[int, int] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    first = sample()
    time.sleep(seconds)
    second = sample()
    if first is None or second is None or second[0] == first[0]:
        return None
    return 1 - (second[1] - first[1]) / (second[0] - first[0])


def settle(seconds: float, max_busy: float, max_wait: float) -> float | None:
    """os.sync(), sleep ``seconds``; then wait (up to max_wait s) for a second in which at
    most ``max_busy`` of the CPUs were busy. Returns the last second's busy fraction."""
    os.sync()
    time.sleep(max(0.0, seconds - 1))
    busy = cpu_busy(min(1.0, seconds))
    deadline = time.monotonic() + max_wait
    while busy is not None and busy > max_busy and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return busy


TIME = "/usr/bin/time"  # GNU time: the peak RSS of the tool's own process (%M)


def run_timed(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> tuple[float, int, float]:
    """Run command; return (wall seconds, peak RSS in KiB, CPU seconds) of the tool's process.

    The peak RSS comes from GNU time where it is installed: a child forked from this
    (large) benchmark process would report our own RSS as its peak. Without it, the
    os.wait4 figure is an upper bound."""
    rss_file = log.with_suffix(".rss")
    if os.access(TIME, os.X_OK):
        command = [TIME, "-f", "%M", "-o", str(rss_file), *command]
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
    rss = int(rss_file.read_text().split()[-1]) if rss_file.exists() else usage.ru_maxrss
    return elapsed, rss, usage.ru_utime + usage.ru_stime


def toml_project(folder: Path, model: str, repo: str, commit: str) -> None:
    folder.mkdir(parents=True)
    (folder / "models.toml").write_text(
        f'[settings]\ndir = "models"\n\n[models.{model}]\nhf = "{repo}"\nrevision = "{commit}"\nfiles = ["*"]\n',
        encoding="utf-8",
    )


# --------------------------------------------------------------------------
# Verification (outside the timing)


def verify(folder: Path, manifest: dict[str, dict[str, object]], source: Path, spot: str) -> None:
    found = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}  # follows symlinks
    if set(found) != set(manifest):
        missing, extra = sorted(set(manifest) - set(found)), sorted(set(found) - set(manifest))
        sys.exit(f"{folder}: wrong files; missing {missing[:5]}, unexpected {extra[:5]}")
    total = sum(p.stat().st_size for p in found.values())
    if total != sum(int(m["size"]) for m in manifest.values()):  # type: ignore[call-overload]
        sys.exit(f"{folder}: {total} bytes, expected {sum(int(m['size']) for m in manifest.values())}")  # type: ignore[call-overload]
    for path, entry in manifest.items():
        digest = hashlib.sha256()
        with open(found[path], "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
        if digest.hexdigest() != entry["sha256"]:
            sys.exit(f"{found[path]}: sha256 differs from the served file")
    with open(found[spot], "rb") as got, open(source / spot, "rb") as want:
        while True:
            a, b = got.read(1 << 22), want.read(1 << 22)
            if a != b:
                sys.exit(f"{found[spot]}: bytes differ from the served file")
            if not a:
                break


# --------------------------------------------------------------------------
# Report


def machine_info(workdir: Path) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    import huggingface_hub

    def meminfo() -> str:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        except OSError:
            pass
        return "?"

    def cpu_model() -> str:
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or "?"

    def filesystem(path: Path) -> str:
        try:
            best = ("", "?")
            for line in Path("/proc/mounts").read_text().splitlines():
                _, mount, fstype, *_ = line.split()
                if str(path.resolve()).startswith(mount) and len(mount) >= len(best[0]):
                    best = (mount, fstype)
            return f"{best[1]} (mounted at {best[0]})"
        except OSError:
            return "?"

    versions = []
    for name in ("modelsync", "requests", "blake3", "httpx", "httpx2"):
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return [
        f"machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu_model()}), {meminfo()} RAM",
        f"python: {platform.python_version()} ({sys.executable})",
        f"huggingface_hub {huggingface_hub.__version__}; " + "; ".join(versions),
        f"modelsync source: {ROOT} at {source_version()}",
        f"work folder: {workdir} on {filesystem(workdir)}",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
    ]


def source_version() -> str:
    """The commit of the modelsync checkout being measured, and whether modelsync/ has local changes."""
    def git(*argv: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return "not a git checkout"
    dirty = git("status", "--porcelain", "--", "modelsync")
    return commit + (" with local changes in modelsync/" if dirty else " (modelsync/ clean)")


def fmt_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def describe(manifests: dict, big_size: int) -> str:
    sizes = sorted(int(m["size"]) for m in manifests["many"].values())
    kib = 1024
    buckets = [("< 4 KiB", 0, 4 * kib), ("4-16 KiB", 4 * kib, 16 * kib), ("16-64 KiB", 16 * kib, 64 * kib + 1),
               ("64-256 KiB", 64 * kib + 1, 256 * kib), ("256 KiB-1 MiB", 256 * kib, 1024 * kib)]
    counts = ", ".join(f"{name}: {sum(1 for x in sizes if lo <= x < hi)}" for name, lo, hi in buckets)
    lfs = sum(1 for path in manifests["many"] if path.endswith(".onnx"))
    return (
        f"many: {len(sizes)} files, {fmt_size(sum(sizes))} ({counts}; median {fmt_size(statistics.median(sizes))}, "
        f"largest {fmt_size(sizes[-1])}; {lfs} .onnx files stored with LFS); big: 1 file, {fmt_size(big_size)} (LFS)"
    )


def report(results: dict[str, dict[str, list[dict[str, float]]]], manifests: dict, runs: int) -> list[str]:
    lines = [
        "| scenario | tool | median s | min s | max s | peak RSS (median) | CPU s (median) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios = []
    for scenario, per_tool in results.items():
        files = manifests[scenario]
        total = fmt_size(sum(int(m["size"]) for m in files.values()))
        what = f"{scenario} ({len(files)} file{'s' if len(files) > 1 else ''}, {total})"
        medians, minima = {}, {}
        for tool in TOOLS:
            samples = per_tool[tool]
            secs = [x["seconds"] for x in samples]
            medians[tool], minima[tool] = statistics.median(secs), min(secs)
            rss = statistics.median(x["rss_kib"] for x in samples) / 1024
            cpu = statistics.median(x["cpu_s"] for x in samples)
            lines.append(
                f"| {what} | {tool} | {medians[tool]:.3f} | {min(secs):.3f} | {max(secs):.3f} | {rss:.0f} MiB | {cpu:.2f} |"
            )
        ratio = medians["snapshot_download"] / medians["modelsync"]
        goal = 1.5 if scenario == "many" else 1.0
        verdict = "met" if ratio >= goal else "NOT met"
        ratios.append(
            f"{scenario}: snapshot_download / modelsync = {ratio:.2f}x (medians of {runs}; "
            f"{minima['snapshot_download'] / minima['modelsync']:.2f}x of the minima); goal >= {goal:.1f}x: {verdict}"
        )
    return lines + [""] + ratios


# --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool per scenario (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per tool per scenario first (default 1)")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds to sleep after os.sync() before each run")
    parser.add_argument("--max-busy", type=float, default=0.25, help="wait for a second with at most this CPU share busy")
    parser.add_argument("--max-wait", type=float, default=10.0, help="... but at most this many seconds (default 10)")
    parser.add_argument("--scenarios", default="many,big", help="comma-separated: many, big")
    parser.add_argument("--big-mib", type=int, default=256, help="size of the big file in MiB (default 256)")
    parser.add_argument("--workdir", type=Path, help="where data and runs go (default: a new temp folder, removed)")
    parser.add_argument("--keep", action="store_true", help="keep every run folder and the work folder")
    parser.add_argument("--json", type=Path, help="also write every sample to this JSON file")
    parser.add_argument("--server-nagle", action="store_true", help="leave Nagle's algorithm on in the test server")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, nagle=args.server_nagle)

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not scenarios or any(s not in SCENARIOS for s in scenarios):
        parser.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    began = time.monotonic()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="modelsync-hf-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    exe = modelsync_exe()
    info = machine_info(workdir)
    info_source = source_version()
    print("\n".join(info), flush=True)

    data_dir = workdir / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    manifests = generate(data_dir, args.big_mib << 20)
    print(describe(manifests, args.big_mib << 20), flush=True)

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(data_dir), *(["--server-nagle"] if args.server_nagle else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        hello = json.loads(server.stdout.readline() or "null")
        if not hello:
            sys.exit("the hub server did not start")
        endpoint, commits = hello["endpoint"], hello["commits"]
        print(f"hub: {endpoint} (a separate process, pid {server.pid})", flush=True)

        # One lock per scenario, made once against the same server, into a throwaway cache.
        templates = {}
        for scenario in scenarios:
            template = workdir / "templates" / scenario
            shutil.rmtree(template, ignore_errors=True)
            toml_project(template, scenario, SCENARIOS[scenario], commits[SCENARIOS[scenario]])
            env = clean_env(
                workdir / "pycache",
                HF_ENDPOINT=endpoint,
                HF_HOME=str(workdir / "lock-hf-home"),
                MODELSYNC_CACHE_DIR=str(workdir / "lock-cache"),
            )
            subprocess.run([exe, "lock", "-q", "--project", str(template)], env=env, check=True)
            templates[scenario] = template
        shutil.rmtree(workdir / "lock-cache", ignore_errors=True)

        counter = iter(range(1_000_000))

        def one_run(scenario: str, tool: str) -> dict[str, float]:
            repo, commit = SCENARIOS[scenario], commits[SCENARIOS[scenario]]
            run_dir = workdir / "runs" / f"{next(counter):04d}-{scenario}-{tool}"
            run_dir.mkdir(parents=True)
            env = clean_env(
                workdir / "pycache",
                HF_ENDPOINT=endpoint,
                HF_HOME=str(run_dir / "hf-home"),
                HF_HUB_CACHE=str(run_dir / "hf-cache"),
            )
            if tool == "modelsync":
                project = run_dir / "project"
                project.mkdir()
                for name in ("models.toml", "models.lock"):
                    shutil.copy2(templates[scenario] / name, project / name)
                env["MODELSYNC_CACHE_DIR"] = str(run_dir / "ms-cache")
                command = [exe, "sync", "--frozen", "--jobs", str(JOBS), "--project", str(project)]
                result = project / "models" / scenario
            else:
                command = [sys.executable, "-c", SNAPSHOT_CODE, repo, commit, str(run_dir / "hf-cache"), endpoint, str(JOBS)]
                result = run_dir / "hf-cache" / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
            busy = settle(args.settle, args.max_busy, args.max_wait)
            seconds, rss, cpu = run_timed(command, env, run_dir / "log.txt", run_dir)
            verify(result, manifests[scenario], data_dir / scenario, spot=max(manifests[scenario]))
            if tool == "modelsync" and (run_dir / "hf-cache").exists():
                sys.exit(f"{run_dir}: modelsync created a Hugging Face cache; it must not reuse one here")
            if not args.keep:
                shutil.rmtree(run_dir)
            return {"seconds": seconds, "rss_kib": rss, "cpu_s": cpu, "busy_before": busy if busy is not None else -1}

        results: dict[str, dict[str, list[dict[str, float]]]] = {s: {t: [] for t in TOOLS} for s in scenarios}
        total = args.warmup + args.runs
        for round_ in range(total):
            timed = round_ >= args.warmup
            for scenario in scenarios:
                for tool in TOOLS:  # A B A B ...
                    sample = one_run(scenario, tool)
                    label = f"run {round_ - args.warmup + 1}/{args.runs}" if timed else "warm-up (not counted)"
                    busy = f"{sample['busy_before']:4.0%}" if sample["busy_before"] >= 0 else "   ?"
                    print(
                        f"  {label:22} {scenario:5} {tool:18} {sample['seconds']:7.3f} s  "
                        f"{sample['rss_kib'] / 1024:5.0f} MiB  {sample['cpu_s']:5.2f} CPU s   "
                        f"(CPUs {busy} busy just before)",
                        flush=True,
                    )
                    if timed:
                        results[scenario][tool].append(sample)
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print("\n".join(info))
    if source_version() != info_source:
        print(f"WARNING: the modelsync checkout changed during the benchmark (now {source_version()})")
    starts = [x["busy_before"] for per_tool in results.values() for samples in per_tool.values() for x in samples]
    busy_starts = sum(1 for b in starts if b > args.max_busy)
    print(
        f"{args.runs} timed runs per tool per scenario (after {args.warmup} warm-up round), interleaved A B A B, "
        f"os.sync() + {args.settle:g} s sleep before each; {JOBS} workers for both tools; "
        f"{busy_starts} of {len(starts)} runs started while the CPUs were over {args.max_busy:.0%} busy; "
        f"the benchmark took {(time.monotonic() - began) / 60:.1f} min"
    )
    print()
    print("\n".join(report(results, manifests, args.runs)))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
