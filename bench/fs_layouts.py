"""Which order of system calls puts a small blob in the store and its file in the view cheapest?

    python bench/fs_layouts.py [--files 2000] [--processes 3] [--rounds 7] [--folder DIR]

No network and no modelsync code: each variant writes ``--files`` files of
16 KiB, shared out over ``--processes`` forked processes, into a fresh
folder on the disk under ``--folder`` (default: a temp folder; use the disk
your cache lives on). Every variant ends with the same result as a sync:
the bytes in ``blobs/<ab>/<digest>`` (read-only) and a hardlink at
``view/<model>/<file>`` in a folder of its own. ``curl`` writes each file
once where it lands, as curl does: the cost of the layout is the
difference. The variants run interleaved, ``sync`` and a second's pause
before each, and the medians of the rounds are printed: wall seconds and
the CPU seconds of the processes (user + system).

Variants (each also stats the blob first, as a claim does):

- ``rename``: a temp file in ``tmp/``, renamed into the blob's fan-out
  folder, then the model's folder and a hardlink, then a stat of the view
  file (what modelsync does);
- ``beside``: the temp file in the fan-out folder itself (a rename within
  one folder), fstat instead of stat;
- ``tmpfile``: an unnamed ``O_TMPFILE`` in the fan-out folder, given its
  name with ``linkat`` (Linux);
- ``view-first``: the model's folder, a temp file in it renamed to the
  view file, then a hardlink into the store;
- ``view-tmpfile``: the model's folder, an ``O_TMPFILE`` in it named with
  ``linkat``, then a hardlink into the store.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DATA = os.urandom(16 * 1024)
VARIANTS = ("curl", "rename", "beside", "tmpfile", "view-first", "view-tmpfile")


def _written(path: str, flags: int = os.O_CREAT | os.O_EXCL, mode: int = 0o444) -> int:
    """A new file (or, with O_TMPFILE, an unnamed one in the folder ``path``) holding DATA, still open."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | flags, mode)
    os.write(fd, DATA)
    return fd


def write(variant: str, base: str, first: int, last: int) -> None:
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY) if "tmpfile" in variant else -1

    def name(fd: int, path: str) -> None:  # an O_TMPFILE's first name
        os.link(str(fd), path, src_dir_fd=proc, follow_symlinks=True)

    for i in range(first, last):
        digest = f"{i:064x}"
        fan_out = f"{base}/blobs/{digest[-2:]}"
        blob = f"{fan_out}/{digest}"
        folder = f"{base}/view/m{i:05d}"
        view = f"{folder}/f.bin"
        if variant == "curl":
            os.close(_written(f"{base}/view/f{i:05d}", mode=0o644))
            continue
        try:
            os.stat(blob)
        except FileNotFoundError:
            pass
        if variant == "view-first" or variant == "view-tmpfile":
            os.mkdir(folder)
            if variant == "view-first":
                fd = _written(f"{folder}/.f.bin.tmp")
                os.replace(f"{folder}/.f.bin.tmp", view)
            else:
                fd = _written(folder, os.O_TMPFILE)
                name(fd, view)
            os.fstat(fd)
            os.close(fd)
            os.link(view, blob)
            continue
        if variant == "rename":
            fd = _written(f"{base}/tmp/blob-{i}.part")
            os.replace(f"{base}/tmp/blob-{i}.part", blob)
        elif variant == "beside":
            fd = _written(f"{fan_out}/.{digest}.tmp")
            os.replace(f"{fan_out}/.{digest}.tmp", blob)
        else:  # tmpfile
            fd = _written(fan_out, os.O_TMPFILE)
            name(fd, blob)
        if variant != "rename":
            os.fstat(fd)
        os.close(fd)
        os.mkdir(folder)
        os.link(blob, view)
        if variant == "rename":
            os.stat(view)


def run(variant: str, base: str, files: int, processes: int) -> tuple[float, float]:
    for folder in ("tmp", "blobs", "view"):
        os.makedirs(f"{base}/{folder}")
    for i in range(256):
        os.mkdir(f"{base}/blobs/{i:02x}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    pids = []
    for p in range(processes):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                write(variant, base, p * files // processes, (p + 1) * files // processes)
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if status:
            raise SystemExit(f"{variant}: a writer failed")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--folder", default=None, help="where the fresh folders go (default: a temp folder)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("Linux only (O_TMPFILE, /proc/self/fd)")
    variants = args.variants.split(",")
    root = tempfile.mkdtemp(prefix="fs-layouts-", dir=args.folder)
    results: dict[str, list[tuple[float, float]]] = {variant: [] for variant in variants}
    for round_ in range(args.rounds):
        for variant in variants:
            subprocess.run(["sync"], check=False)
            time.sleep(1)
            # A fresh folder each run, never one just emptied: re-creating files
            # that were just deleted is many times slower on ext4.
            results[variant].append(run(variant, f"{root}/{round_}-{variant}", args.files, args.processes))
    print(f"{args.files} files of 16 KiB, {args.processes} processes, medians of {args.rounds} rounds, under {root}")
    print("| variant | wall s | CPU s |\n| --- | ---: | ---: |")
    for variant, runs in results.items():
        print(f"| {variant} | {statistics.median(w for w, _ in runs):.3f} | {statistics.median(c for _, c in runs):.3f} |")
    print(f"(the folders are left for you to delete: rm -rf {root})")


if __name__ == "__main__":
    main()
