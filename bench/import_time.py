"""How long `import modelsync; modelsync.path("vad")` takes, against a bare interpreter.

Runs both commands interleaved (A B A B ...) in fresh processes, from the
repository root after `modelsync sync`, and prints medians and the difference.

    python bench/import_time.py [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import modelsync; modelsync.path('vad')": [sys.executable, "-c", "import modelsync; modelsync.path('vad')"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    subprocess.run(COMMANDS["import modelsync; modelsync.path('vad')"], cwd=ROOT, check=True)  # fail early if not synced
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    for name, median in medians.items():
        print(f"{median:7.1f} ms  median of {args.runs}  {name}")
    bare, ours = medians.values()
    print(f"{ours - bare:7.1f} ms  added by modelsync ({ours / bare:.2f}x the bare interpreter)")


if __name__ == "__main__":
    main()
