"""Wall time and peak memory of a phase: peak RSS sampled on CPU, max allocated on CUDA."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import torch

_PAGE = 4096


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; falls back to ru_maxrss elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class PhaseStats:
    seconds: float = 0.0
    peak_bytes: int = 0
    kind: str = "rss"  # "rss" (process peak resident memory) or "cuda" (max allocated)

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 2**30


class Measure:
    """``with Measure() as m: ...`` then ``m.stats``; a daemon thread samples RSS every 20 ms."""

    def __init__(self, device: str = "cpu", interval: float = 0.02) -> None:
        self.cuda = device == "cuda" and torch.cuda.is_available()
        self.interval = interval
        self.stats = PhaseStats(kind="cuda" if self.cuda else "rss")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.stats.peak_bytes = max(self.stats.peak_bytes, rss_bytes())

    def __enter__(self) -> Measure:
        self._t0 = time.perf_counter()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self.stats.peak_bytes = rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, et: type | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stats.seconds = time.perf_counter() - self._t0
        if self.cuda:
            self.stats.peak_bytes = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            if self._thread:
                self._thread.join()
            self.stats.peak_bytes = max(self.stats.peak_bytes, rss_bytes())
