"""Contention: the share of the CPUs other processes used since the last look, from /proc/stat less our own time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag_middleware.memory import cpu_contention
from rag_middleware.memory.cpu_contention import Contention

HZ = os.sysconf("SC_CLK_TCK")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A fake /proc/stat, clock and own CPU time: advance(seconds, machine_busy_s, own_s)."""
    stat = tmp_path / "stat"
    state = {"busy": 0.0, "own": 0.0}
    clock = Clock()

    def write() -> None:
        ticks = int(state["busy"] * HZ)
        stat.write_text(f"cpu  {ticks} 0 0 999999 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")

    def advance(seconds: float, busy: float, own: float) -> None:
        clock.now += seconds
        state["busy"] += busy
        state["own"] += own
        write()

    monkeypatch.setattr(cpu_contention.time, "monotonic", clock)
    monkeypatch.setattr(cpu_contention.os, "times", lambda: os.times_result((state["own"], 0.0, 0.0, 0.0, 0.0)))
    monkeypatch.setattr(cpu_contention.os, "cpu_count", lambda: 2)
    write()
    return stat, advance


def test_other_processes_busy_or_not(machine):
    stat, advance = machine
    watch = Contention(threshold=0.25, interval=0.5, stat=stat)
    assert not watch.busy()  # the first look has nothing to compare with
    advance(1.0, busy=1.9, own=1.8)  # the machine's busy time is nearly all ours
    assert not watch.busy() and watch.share == pytest.approx(0.05, abs=0.02)
    advance(1.0, busy=1.5, own=0.5)  # another process used a whole core of two
    assert watch.busy() and watch.share == pytest.approx(0.5, abs=0.02)
    advance(0.1, busy=0.0, own=0.1)  # within the interval: the last answer, nothing read
    assert watch.busy()
    advance(1.0, busy=0.3, own=0.2)
    assert not watch.busy()


def test_without_proc_stat_it_is_never_busy(tmp_path):
    watch = Contention(stat=tmp_path / "missing")
    assert not watch.busy() and not watch.busy() and watch.share is None


def test_a_real_look_reads_this_machine():
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat")
    watch = Contention(interval=0.0)
    watch.busy()
    watch.busy()
    assert watch.share is not None and watch.share >= 0.0
