"""Device and precision selection: which device, which weight dtype, whether to autocast."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 math (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def resolve_device(device: str = "auto") -> str:
    """`auto` -> cuda, then mps, then cpu; an explicit device that is missing is an error."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("model.device=cuda but torch sees no CUDA device; use model.device=auto or cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("model.device=mps but MPS is not available; use model.device=auto or cpu")
    return device


@dataclass(frozen=True)
class Precision:
    """Weight dtype plus the autocast dtype used for the forward/backward (None = no autocast)."""

    weights: torch.dtype
    autocast: torch.dtype | None

    @property
    def label(self) -> str:
        w = str(self.weights).removeprefix("torch.")
        return w if self.autocast is None else f"{w} weights + {str(self.autocast).removeprefix('torch.')} autocast"


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_precision(precision: str, device: str) -> Precision:
    """Pick weights/autocast dtypes. `auto`: fp32 master weights, bf16 autocast where the hardware has it.

    Training keeps fp32 master weights on every device (optimizer updates in fp32); bf16 math comes
    from autocast, which roughly doubles speed on CPUs with AVX512-BF16/AMX.
    """
    if precision == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return Precision(torch.float32, torch.bfloat16)
        if device == "cpu" and cpu_has_bf16():
            return Precision(torch.float32, torch.bfloat16)
        return Precision(torch.float32, None)
    if precision in ("fp32", "float32"):
        return Precision(torch.float32, None)
    if precision in ("bf16", "bfloat16"):
        return Precision(torch.float32, torch.bfloat16)
    if precision in ("fp16", "float16"):
        if device != "cuda":
            raise ValueError("train.precision=fp16 needs CUDA; on CPU use bf16 (if supported) or fp32")
        return Precision(torch.float32, torch.float16)
    raise ValueError(f"unknown precision {precision!r}; allowed: auto, fp32, bf16, fp16")


def torch_dtype(name: str) -> torch.dtype | None:
    """Map a recipe dtype name to a torch dtype; `auto` -> None (decided by precision)."""
    return None if name == "auto" else _DTYPES[name]
