"""Whether other processes keep this machine's CPUs busy: the embedder's choice between spinning worker threads
and a single thread (onnx_embedding.py).

The share of all CPU time that other processes used since the last look: the machine's busy time from
``/proc/stat`` less this process's own CPU time, over the wall time between two looks, read again at most every
``interval`` seconds (one read costs ~30 us). Where ``/proc/stat`` cannot be read the answer is always "not busy".
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

__all__ = ["Contention"]


class Contention:
    def __init__(self, *, threshold: float = 0.25, interval: float = 0.5, stat: Path = Path("/proc/stat")) -> None:
        self.threshold = threshold  # share of all CPUs used by other processes above which they are busy
        self.interval = interval
        self._stat = stat
        self._lock = threading.Lock()
        self._last: tuple[float, float, float] | None = None  # (monotonic, machine busy s, own CPU s)
        self._busy = False
        self.share: float | None = None  # the other processes' share at the last look (for logs and tests)

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            fields = [int(x) for x in self._stat.read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 5:
            return None
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        own = os.times()
        return time.monotonic(), busy, own.user + own.system

    def busy(self) -> bool:
        """True when other processes used more than ``threshold`` of the CPUs since the previous look."""
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.interval:
                return self._busy
            sample = self._sample()
            if sample is None:
                return False
            if self._last is not None:
                wall = sample[0] - self._last[0]
                other = (sample[1] - self._last[1]) - (sample[2] - self._last[2])
                self.share = max(0.0, other / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0
                self._busy = self.share > self.threshold
            self._last = sample
            return self._busy
