"""Peak memory of a phase: a spike shorter than the sampling interval still counts."""

from __future__ import annotations

import sys

import pytest
import torch

from ftatlas.phase_stats import Measure, peak_rss_bytes, reset_peak_rss


def spike(mib: int) -> None:
    t = torch.ones(mib * 2**18)  # fp32: mib MiB, touched, then freed at once
    del t


@pytest.mark.skipif(not sys.platform.startswith("linux") or not reset_peak_rss(), reason="needs /proc clear_refs")
def test_a_spike_between_samples_is_caught_and_an_earlier_one_is_not():
    spike(300)  # before the phase: must not count
    with Measure(interval=3600) as m:  # the sampler never wakes: only the kernel's mark can see the spike
        start = peak_rss_bytes()
        spike(200)
    assert start is not None and start < m.stats.peak_bytes
    assert 150 * 2**20 < m.stats.peak_bytes - start < 290 * 2**20
