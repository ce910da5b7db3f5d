"""How fast could a Python downloader with modelsync's layout be? The floor for many small files.

A minimal loop, none of modelsync's code: raw keep-alive sockets, a head split
in place, blake3 of the body, and then, per file, what each layout costs:

- ``create``: the file written where curl writes it (open, pwrite, close);
- ``blob``: as a content-addressed blob (written in tmp/, made read-only,
  renamed into one of 256 fan-out folders);
- ``all``: the blob plus the view: a folder per model and a hardlink into it.

Each layout runs sequentially (``seq``) and on 2 and 8 threads, and the full
layout also in 2, 3 and 4 forked processes of one thread each (what modelsync's
worker processes do), and in 2 and 3 processes with 16 requests in flight on
each connection (HTTP/1.1 pipelining, what ``modelsync/pipeline.py`` does),
interleaved with ``curl -Z --parallel-max 8`` on the same files. It reuses the data and
the nginx of transfer_bench.py (same --data folder). What it says: how much
of modelsync's time on the small set is the layout, how much is Python
itself, and how much more threads cost than they give on a loopback server.

    python bench/floor_bench.py --set small --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import transfer_bench as tb  # noqa: E402 - the data sets and nginx of the main benchmark

import blake3  # noqa: E402


def fetch_all(
    endpoint: str, set_name: str, names: list[str], out: Path, layout: str, threads: int, processes: int = 1, depth: int = 1
) -> float:
    host, port = endpoint.split("//")[1].split(":")
    for sub in ("tmp", "blobs", "view"):
        (out / sub).mkdir(parents=True)
    made: set[str] = set()
    local = threading.local()

    def save(name: str, body: bytes) -> None:
        digest = blake3.blake3(body).hexdigest()
        path = out / "tmp" / digest if layout != "create" else out / "view" / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.pwrite(fd, body, 0)
        if layout == "create":
            os.close(fd)
            return
        os.fchmod(fd, 0o444)
        os.close(fd)
        if digest[:2] not in made:
            os.makedirs(out / "blobs" / digest[:2], exist_ok=True)
            made.add(digest[:2])
        blob = out / "blobs" / digest[:2] / digest[2:]
        os.replace(path, blob)
        if layout == "all":
            os.mkdir(out / "view" / name)
            os.link(blob, out / "view" / name / name)

    def request(name: str) -> bytes:
        return f"GET /{set_name}/{name} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    def get(name: str, ahead: list[str] | None = None) -> None:
        """One file; with ``ahead``, the requests for those are sent now too (pipelined)."""
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = [socket.create_connection((host, int(port))), b""]
            conn[0].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock, buffer = conn
        if ahead is None:
            sock.sendall(request(name))
        elif ahead:
            sock.sendall(b"".join(request(n) for n in ahead))
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += sock.recv(1 << 18)
        head, buffer = buffer[:end].decode("latin-1"), buffer[end + 4 :]
        length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:"))
        while len(buffer) < length:
            buffer += sock.recv(1 << 18)
        body, conn[1] = buffer[:length], buffer[length:]
        save(name, body)

    started = time.perf_counter()
    if processes > 1:
        pids = []
        for index in range(processes):
            pid = os.fork()
            if pid == 0:  # a worker: its share of the files, sequentially, then out
                status = 1
                try:
                    mine = names[index::processes]
                    for position, name in enumerate(mine):
                        if depth == 1:
                            get(name)
                        else:  # top up to `depth` requests in flight, half a pipeline at a time
                            sent_upto = getattr(local, "sent", 0)
                            ahead = mine[sent_upto : position + depth] if sent_upto - position <= depth // 2 else []
                            local.sent = sent_upto + len(ahead)
                            get(name, ahead)
                    status = 0
                finally:
                    os._exit(status)
            pids.append(pid)
        if any(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids):
            raise RuntimeError("a worker process failed")
    elif threads == 1:
        for name in names:
            get(name)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(get, names))
    return time.perf_counter() - started


def curl_all(config: Path, out: Path) -> float:
    out.mkdir(parents=True)
    started = time.perf_counter()
    subprocess.run(["curl", *tb.CURL_FLAGS, "--parallel", "--parallel-max", "8", "--config", str(config)],
                   cwd=out, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="small", choices=["small", "mid"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=2.0)
    parser.add_argument("--data", type=Path, default=tb.DEFAULT_DATA)
    args = parser.parse_args()
    bins = tb.ensure_binaries(["nginx", "curl"])
    data = args.data.resolve()
    count, size = tb.specs(64 << 20)[args.set]
    ds = tb.ensure_data(data, args.set, count, size)
    tb.ensure_data(data, tb.WARMUP, *tb.specs(64 << 20)[tb.WARMUP])  # nginx's readiness probe
    work = Path(tempfile.mkdtemp(prefix="floor-", dir=data))
    nginx, endpoint = tb.start_nginx(bins["nginx"], data, work / "nginx")
    try:
        config = work / "curl.config"
        config.write_text("".join(f'url = "{endpoint}/{ds.name}/{n}"\noutput = "{n}"\n' for n in ds.files))
        names = list(ds.files)
        variants = [("curl -Z 8", None, 0, 1, 1)] + [
            (f"python {layout} {'seq' if threads == 1 else f'{threads} threads'}", layout, threads, 1, 1)
            for layout in ("create", "blob", "all") for threads in (1, 2, 8)
        ] + [(f"python all {processes} processes", "all", 1, processes, 1) for processes in (2, 3, 4)] + [
            (f"python all {processes} processes, pipelined", "all", 1, processes, 16) for processes in (2, 3)
        ]
        times: dict[str, list[float]] = {label: [] for label, *_ in variants}
        counter = 0
        for round_ in range(args.runs):
            for label, layout, threads, processes, depth in tb.rotate(variants, round_):  # type: ignore[arg-type]
                counter += 1
                out = work / "runs" / f"{counter:04d}"  # kept until the end: deletions slow ext4 with discard
                tb.settle(args.sleep)
                seconds = curl_all(config, out) if layout is None else fetch_all(endpoint, ds.name, names, out, layout, threads, processes, depth)
                times[label].append(seconds)
                print(f"  round {round_ + 1}  {label:28} {seconds:.3f} s", flush=True)
        print(f"\n{ds.name}: {count} x {size} bytes, medians of {args.runs} interleaved runs (wall s, the loop only; "
              "a process start and imports add about 0.05 s)\n")
        for label, values in times.items():
            print(f"| {label} | {statistics.median(values):.3f} |")
        print(json.dumps({k: v for k, v in times.items()}), file=sys.stderr)
    finally:
        tb.stop_process(nginx)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
