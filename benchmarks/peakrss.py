"""Peak resident memory of this process while a block runs: a thread reads /proc/self/statm.

Used by the benchmark scripts that run in fresh processes (`bench.py`'s memory and corpus rows).
Linux only (procfs).
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRss:
    """`with PeakRss(0.002) as peak: ...`, then `peak.growth`: the peak RSS inside the block minus the
    RSS at its start, in bytes, sampled every `interval` seconds (and once more at the end)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> PeakRss:
        self.base = self.peak = rss()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base
