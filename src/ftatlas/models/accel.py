"""Optional training accelerators and the checks that say where each one runs.

CUDA-only pieces (Liger kernels, bitsandbytes' paged 8-bit AdamW) are wired here
behind checks that stop with a clear message on CPU; they were not verified on a GPU in this
repository's benchmarks. ``compile_blocks`` is the regional ``torch.compile`` (one compile per
decoder block class, reused by every layer), usable on CPU and CUDA.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn


class AcceleratorUnavailable(ValueError):
    """A requested accelerator cannot run on this device/installation."""


def check_cuda_options(train: Any, device: str) -> dict[str, Any]:
    """TrainingArguments fields for ``train.optim`` / ``train.liger``; raise with the reason where they cannot run."""
    extra: dict[str, Any] = {}
    if train.optim == "paged_adamw_8bit":
        if device != "cuda":
            raise AcceleratorUnavailable(
                f"train.optim=paged_adamw_8bit needs CUDA (bitsandbytes pages optimizer state to host memory "
                f"through CUDA unified memory); this run is on {device}: use train.optim=adamw")
        extra["optim"] = "paged_adamw_8bit"
    if train.liger:
        if device != "cuda":
            raise AcceleratorUnavailable(
                f"train.liger=true needs CUDA (Liger's kernels are Triton GPU kernels); this run is on {device}: "
                "drop train.liger (train.chunked_loss gives the fused-loss memory saving on any device)")
        if importlib.util.find_spec("liger_kernel") is None:
            raise AcceleratorUnavailable("train.liger=true needs the liger-kernel package: pip install 'ftatlas[cuda]'")
        extra["use_liger_kernel"] = True
    return extra


def compile_blocks(model: nn.Module) -> int:
    """``torch.compile`` every decoder block in place (dynamic shapes); returns how many were compiled."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        raise AcceleratorUnavailable(f"train.compile: no decoder blocks found on {type(base).__name__}")
    for layer in layers:
        layer.compile(dynamic=True)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 4 * len(layers))
    return len(layers)
