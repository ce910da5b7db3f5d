"""The throttle: all jobs at once while a run waits on the network, about one
task per CPU while the process is CPU-bound (near servers), and back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modelsync import _throttle, engine, sources
from modelsync._throttle import Throttle
from modelsync.store import Store


class Concurrency:
    """Counts the tasks inside ``with`` at once; the largest count since ``reset``."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.now -= 1

    def reset(self) -> None:
        with self._lock:
            self.most = self.now


def run_tasks(throttle: Throttle, count: int, work) -> None:  # type: ignore[no-untyped-def]
    def task() -> None:
        with throttle:
            work()

    threads = [threading.Thread(target=task) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)


def test_a_cpu_bound_run_is_cut_to_the_low_limit_and_an_idle_one_gets_every_token_back():
    throttle = Throttle(8, low=2)
    seen = Concurrency()
    throttle.adjust(busy=1.0)
    assert throttle.limit == 2

    def work() -> None:
        with seen:
            time.sleep(0.005)

    run_tasks(throttle, 8, work)  # the first six to end pay the debts
    seen.reset()
    run_tasks(throttle, 24, work)
    assert seen.most <= 2, "tokens asked back stay out of circulation"

    throttle.adjust(busy=0.05)
    assert throttle.limit == 8
    everyone = threading.Barrier(8, timeout=5)
    run_tasks(throttle, 8, everyone.wait)  # breaks (and fails) unless all 8 run at once


def test_debts_not_yet_paid_are_cancelled_when_the_run_turns_idle():
    throttle = Throttle(8, low=2)
    throttle.adjust(busy=1.0)  # no task ended yet: six debts owed, none paid
    throttle.adjust(busy=0.0)
    everyone = threading.Barrier(8, timeout=5)
    run_tasks(throttle, 8, everyone.wait)
    assert throttle.limit == 8


def test_between_the_thresholds_the_limit_stays_as_it_is():
    throttle = Throttle(8, low=2)
    throttle.adjust(busy=(_throttle.IDLE + _throttle.BUSY) / 2)
    assert throttle.limit == 8
    throttle.adjust(busy=_throttle.BUSY)
    throttle.adjust(busy=(_throttle.IDLE + _throttle.BUSY) / 2)
    assert throttle.limit == 2


def test_the_low_limit_is_never_above_the_jobs():
    assert Throttle(1).limit == 1 and Throttle(1).low == 1
    assert Throttle(3, low=16).low == 3


@pytest.fixture
def ctx(tmp_path: Path) -> sources.Context:
    return sources.Context(store=Store(tmp_path / "cache"), project_root=tmp_path, jobs=8)


def process_clock(monkeypatch, busy: float) -> None:
    """The throttle's clocks, with the process using ``busy`` CPU seconds per second:
    the test then does not depend on how loaded the machine running it is."""
    import types

    fake = types.SimpleNamespace(monotonic=time.monotonic, process_time=lambda: time.monotonic() * busy)
    monkeypatch.setattr(_throttle, "time", fake)


def test_tasks_of_a_process_waiting_on_the_network_all_run_at_once(ctx, monkeypatch):
    process_clock(monkeypatch, busy=0.05)
    everyone = threading.Barrier(8, timeout=5)

    def task() -> None:
        time.sleep(3 * _throttle.TICK)  # a few ticks of an idle process: the throttle must not cut
        everyone.wait()

    engine.run_parallel([task] * 16, ctx)


def test_tasks_of_a_cpu_bound_process_are_cut_to_the_cpus_after_a_tick(ctx, monkeypatch):
    process_clock(monkeypatch, busy=1.5)
    monkeypatch.setattr(_throttle, "cpu_count", lambda: 2)
    seen = Concurrency()
    started = time.monotonic()
    late: list[int] = []

    def task() -> None:
        with seen:
            time.sleep(0.005)
            if time.monotonic() - started > 5 * _throttle.TICK:
                late.append(seen.now)

    engine.run_parallel([task] * 400, ctx)
    assert len(late) > 20, "the run was too short to see the throttle at work"
    assert max(late) <= 2, f"still {max(late)} tasks at once after CPU-bound ticks"


def test_the_throttle_measures_the_process_cpu_time_per_wall_second(monkeypatch):
    now = [100.0]
    cpu = [5.0]
    import types

    monkeypatch.setattr(_throttle, "time", types.SimpleNamespace(monotonic=lambda: now[0], process_time=lambda: cpu[0]))
    throttle = Throttle(8, low=2)
    now[0] += 0.1
    cpu[0] += 0.09  # 0.9 CPU seconds per second
    throttle.tick()
    assert throttle.limit == 2
    now[0] += 0.1
    cpu[0] += 0.01  # 0.1: waiting on the network
    throttle.tick()
    assert throttle.limit == 8


def test_a_failing_task_fails_the_run(ctx):
    def boom() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        engine.run_parallel([lambda: None] * 5 + [boom], ctx)
