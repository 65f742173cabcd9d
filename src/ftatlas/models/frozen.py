"""Frozen linear weights stored in the autocast dtype: no per-step casts, half their memory.

Under autocast, every matmul casts its fp32 weight to bf16; torch caches that cast only for leaf
tensors that require grad, so the *frozen* base weights of a LoRA-style run are re-cast on every
forward (and the copies kept for the backward). Storing them in bf16 once gives the same bf16 values
autocast would have used, so the math is unchanged, while the casts and the fp32 copies go. Trained
parameters (adapters, norms, anything with ``requires_grad``) stay fp32 master weights; embeddings and
the LM head are left alone so the residual stream stays fp32.
"""

from __future__ import annotations

import torch
from torch import nn


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
    return saved
