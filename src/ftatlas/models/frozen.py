"""Frozen linear weights stored in the autocast dtype: no per-step casts, half their memory.

Under autocast, every matmul casts its fp32 weight to bf16; torch caches that cast only for leaf
tensors that require grad, so the *frozen* base weights of a LoRA-style run are re-cast on every
forward (and the copies kept for the backward). Storing them in bf16 once gives the same bf16 values
autocast would have used, so the math is unchanged, while the casts and the fp32 copies go. Trained
parameters (adapters, norms, anything with ``requires_grad``) stay fp32 master weights; embeddings and
the LM head are left alone so the residual stream stays fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ftatlas.allocator import _malloc_trim


def store_frozen_linears(model: nn.Module, dtype: torch.dtype) -> int:
    """Cast every plain ``nn.Linear`` with a frozen weight (not the output head) to ``dtype``; returns bytes saved."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    saved = 0
    for module in model.modules():
        if type(module) is not nn.Linear or module is head or module.weight.requires_grad:
            continue
        if not module.weight.is_floating_point() or module.weight.dtype == dtype:
            continue
        for p in (module.weight, module.bias):
            if p is not None and not p.requires_grad:
                saved += p.numel() * (p.element_size() - torch.finfo(dtype).bits // 8)
                p.data = p.data.to(dtype)
    if saved:
        release_file_pages(model)
    return saved


def file_mappings() -> list[tuple[int, int]]:
    """Address ranges of this process' file-backed memory mappings (Linux; empty elsewhere)."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return []
    ranges = []
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/") and fields[4] != "0":  # inode 0: anonymous
            lo, hi = fields[0].split("-")
            ranges.append((int(lo, 16), int(hi, 16)))
    return ranges


def release_file_pages(model: nn.Module) -> int:
    """Copy the tensors still backed by a memory-mapped weights file into ordinary memory, so the mapping (and
    the fp32 pages of the weights just stored in half precision, which it keeps resident) goes away, then hand
    freed heap pages back to the OS. Without this, halving frozen weights loaded from safetensors *adds* their
    half-precision copy to the resident set instead of saving half. Returns the bytes copied."""
    ranges = file_mappings()
    copied = 0
    if ranges:
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                ptr = t.data_ptr()
                if t.numel() and any(lo <= ptr < hi for lo, hi in ranges):
                    t.data = t.data.clone()
                    copied += t.numel() * t.element_size()
    trim_heap()
    return copied


def trim_heap() -> None:
    """glibc ``malloc_trim(0)``: return free heap pages to the OS (no-op where it does not exist)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
