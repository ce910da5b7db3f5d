"""How many fetch tasks run at once: all ``jobs`` while the run waits on the
network, about one per CPU while the process is busy on its CPUs.

With a far server, eight downloads in flight hide eight round trips. With a
near one (loopback, a fast LAN mirror) the answers are there at once, the
work per file is Python and system calls, and eight runnable threads only
take turns at the GIL: every system call hands it to another thread and
back. Measured on 2 vCPUs against nginx on loopback, 2000 files of 16 KiB:
1.72 s with 8 tasks at once, 1.39 s with 2 (docs/performance.md).

So the thread that waits for the tasks samples the process's CPU time every
``TICK`` seconds. CPU-bound (at least ``BUSY`` CPU seconds per second): it
keeps tokens back until only ``low`` tasks run. Waiting (under ``IDLE``): it
gives them all back. The tokens live in a ``queue.SimpleQueue``, so a task's
way in and out is C code and takes no Python lock.
"""

from __future__ import annotations

import os
import queue
import time

TICK = 0.1  # seconds between samples
BUSY = 0.8  # CPU seconds per wall second from which the run counts as CPU-bound
IDLE = 0.4  # and under which it counts as waiting on the network


def cpu_count() -> int:
    """The CPUs this process may run on (a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Throttle:
    """Tokens for tasks, as ``with throttle:``.

    To run fewer tasks, the throttle puts debts in a queue: a task that ends
    while one is there keeps its token out of circulation instead of giving
    it back. (Taking tokens from the queue itself would compete with eight
    waiting workers for every token: measured, one tick then took a second.)
    To run all of them again, it cancels the debts not yet paid and puts the
    paid tokens back. Only the ticking thread changes ``_asked``."""

    def __init__(self, high: int, low: int | None = None) -> None:
        self.high = max(1, high)
        self.low = min(self.high, low if low is not None else max(2, cpu_count()))
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._debts: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(self.high):
            self._tokens.put(None)
        self._asked = 0  # tokens asked back so far: paid (out of circulation) or still owed
        self._sampled = (time.monotonic(), time.process_time())

    @property
    def limit(self) -> int:
        """Tasks allowed at once, once every debt is paid."""
        return self.high - self._asked

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._debts.get_nowait()  # asked back: this token stays out
        except queue.Empty:
            self._tokens.put(None)

    def tick(self) -> None:
        """Sample the CPU time since the last tick and adjust (the waiting thread calls it)."""
        now, cpu = time.monotonic(), time.process_time()
        wall = now - self._sampled[0]
        if wall <= 0:
            return
        self.adjust((cpu - self._sampled[1]) / wall)
        self._sampled = (now, cpu)

    def adjust(self, busy: float) -> None:
        """``busy``: CPU seconds per wall second since the last sample."""
        if busy >= BUSY and self._asked < self.high - self.low:
            for _ in range(self.high - self.low - self._asked):
                self._debts.put(None)
            self._asked = self.high - self.low
        elif busy < IDLE and self._asked:
            while True:  # cancel what is still owed; what was paid goes back
                try:
                    self._debts.get_nowait()
                except queue.Empty:
                    break
                self._asked -= 1
            for _ in range(self._asked):
                self._tokens.put(None)
            self._asked = 0
