"""QLoRA: the frozen base is loaded in 4-bit (NF4/FP4, optional double quantization) by bitsandbytes,
and LoRA adapters train on top in higher precision (Dettmers et al. 2023), via peft's
``prepare_model_for_kbit_training``.

bitsandbytes >= 0.46 runs 4-bit on CPU as well as CUDA, so this is real QLoRA here too. Without
bitsandbytes the run stops before loading anything: there is never a silent unquantized fallback.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any, Literal

import torch
from peft import LoraConfig, prepare_model_for_kbit_training
from pydantic import Field
from torch import nn

from ftatlas.methods.base import PeftMethod, register
from ftatlas.methods.lora import LoraParams, lora_config

MIN_BNB = (0, 46)  # first release with CPU 4-bit kernels


class QLoraParams(LoraParams):
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type of the frozen base")
    double_quant: bool = Field(True, description="also quantize the quantization constants (~0.4 bit/param)")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="dtype the 4-bit weights are dequantized to for each matmul")


def require_bitsandbytes(device: str) -> None:
    """Stop with what to install when 4-bit cannot run on ``device``."""
    try:
        version = importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        raise ValueError("method qlora needs bitsandbytes>=0.46 for its 4-bit base: pip install 'ftatlas[qlora]' "
                         "(or use method lora on an unquantized base)") from None
    major_minor = tuple(int(x) for x in version.split(".")[:2])
    if device == "cpu" and major_minor < MIN_BNB:
        raise ValueError(f"method qlora on CPU needs bitsandbytes>=0.46 (found {version}): "
                         "pip install -U bitsandbytes, or run on CUDA")
    if device == "mps":
        raise ValueError("method qlora: bitsandbytes 4-bit does not run on MPS; use model.device=cpu or cuda")


def base_bytes(model: nn.Module) -> int:
    """Bytes the model's weights take in memory (packed 4-bit tensors at their real size)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def memory_note(model: nn.Module) -> str:
    """``weights 513.1 MiB as fp32 -> 159.0 MiB quantized`` for a (not yet adapted) 4-bit base."""
    from ftatlas.methods.base import count_params

    fp32 = count_params(model).total * 4
    now = base_bytes(model)
    ratio = fp32 / now
    return f"weights {fp32 / 2**20:,.1f} MiB as fp32 -> {now / 2**20:,.1f} MiB quantized ({ratio:.1f}x smaller)"


@register("qlora")
class QLora(PeftMethod):
    summary = "LoRA on a 4-bit (NF4/FP4) frozen base via bitsandbytes; least memory; merge dequantizes"
    Params = QLoraParams
    quantized_base = True
    decision_leaves = {"G": 1, "K": 1}
    min_rows = 50

    def load_options(self, params: QLoraParams, device: str) -> dict[str, Any]:
        from transformers import BitsAndBytesConfig

        require_bitsandbytes(device)
        return {
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type=params.quant_type,
                bnb_4bit_use_double_quant=params.double_quant,
                bnb_4bit_compute_dtype=getattr(torch, params.compute_dtype),
            ),
            "device_map": {"": device},
        }

    def apply(self, model: nn.Module, params: QLoraParams) -> nn.Module:
        if not getattr(model, "is_loaded_in_4bit", False):
            raise ValueError("method qlora: the base model is not loaded in 4-bit; load it with this method's "
                             "load_options (ftatlas train does) rather than quantizing after the fact")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().apply(model, params)

    def apply_on_meta(self, model: nn.Module, params: QLoraParams) -> nn.Module:
        """LoRA's adapters on the unquantized meta model (its counts are LoRA's; 4-bit storage is accounted
        for by the memory model from ``quantized_base``)."""
        return super().apply(model, params)

    def peft_config(self, params: QLoraParams, model: nn.Module) -> LoraConfig:
        return lora_config(params, model)
