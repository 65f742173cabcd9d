"""Heap pages freed by training are handed back to the OS on CPU (glibc keeps them otherwise)."""

from __future__ import annotations

import sys

import pytest
import torch

from ftatlas.models.frozen import _malloc_trim, trim_heap
from ftatlas.objectives.callbacks import HeapTrim
from ftatlas.phase_stats import rss_bytes
from tests.conftest import tiny_recipe


@pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None, reason="glibc only")
def test_trim_returns_freed_heap_pages():
    chunks = [torch.ones(16 * 1024) for _ in range(2000)]  # 2000 x 64 KB, below the mmap threshold: on the heap
    pin = torch.ones(16 * 1024)  # allocated last, so the freed chunks below it cannot shrink the heap top
    del chunks
    before = rss_bytes()
    trim_heap()
    assert before - rss_bytes() > 64 * 2**20  # most of the 125 MB freed comes back
    assert pin.sum() == 16 * 1024


def test_sft_trainer_trims_after_each_step(tiny_model_dir, tmp_path, monkeypatch):
    from ftatlas.objectives import callbacks
    from ftatlas.pipeline import train
    from ftatlas.resolve import build_recipe

    calls = []
    monkeypatch.setattr(callbacks, "trim_heap", lambda: calls.append(1))
    train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"max_steps": 3})), progress=False)
    assert len(calls) == 3  # one per optimizer step
    assert issubclass(HeapTrim, callbacks.TrainerCallback)
