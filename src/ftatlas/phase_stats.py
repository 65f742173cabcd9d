"""Wall time and peak memory of a phase: peak RSS on CPU, max allocated on CUDA.

On Linux the CPU peak is the kernel's own high-water mark (``VmHWM``), reset to the current RSS when the phase
starts (``/proc/self/clear_refs``), so a spike between two samples is not missed; a thread sampling RSS every
20 ms is kept as the fallback where that reset is not allowed, and for phases that overlap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import torch

_PAGE = 4096


def reset_peak_rss() -> bool:
    """Set this process's peak-RSS mark (VmHWM) to its current RSS; False where /proc does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """This process's peak RSS since start or the last ``reset_peak_rss`` (VmHWM); None without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


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
    """``with Measure() as m: ...`` then ``m.stats`` (see the module docstring for how the peak is taken)."""

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
            self._hwm = reset_peak_rss()
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
            hwm = peak_rss_bytes() if self._hwm else None
            self.stats.peak_bytes = max(self.stats.peak_bytes, rss_bytes(), hwm or 0)
