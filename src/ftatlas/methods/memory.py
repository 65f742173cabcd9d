"""Memory model of a method: bytes for frozen weights, trainable weights, gradients and optimizer states.

Parameter counts are exact: the model is built from its config on the meta device (no memory, no
weights) and the method is applied to it, so every method, present and future, is covered by the
same code. Bytes then follow from storage rules: fp32/bf16 weights, bitsandbytes 4-bit blocks for a
qlora base, fp32 gradients for trainable weights, and AdamW's two states (fp32, or 1 byte each for
8-bit AdamW). Activations depend on data and batch and belong to the resource estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig

from ftatlas.methods.base import METHODS, unique_parameters

OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw_8bit": 2, "sgd": 0}
NF4_BLOCK = 64  # bitsandbytes 4-bit block size: one absmax per 64 weights
DQ_BLOCK = 256  # double quantization: absmax values quantized to 8 bit in blocks of 256


def four_bit_bytes_per_param(double_quant: bool) -> float:
    """Packed 4-bit weight + its quantization constants (fp32 absmax, or 8-bit + fp32 per 256 blocks)."""
    constants = (1 + 4 / DQ_BLOCK) / NF4_BLOCK if double_quant else 4 / NF4_BLOCK
    return 0.5 + constants


@dataclass(frozen=True)
class MemoryEstimate:
    trainable_params: int
    frozen_params: int
    frozen_bytes: int
    trainable_bytes: int
    grad_bytes: int
    optimizer_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.frozen_bytes + self.trainable_bytes + self.grad_bytes + self.optimizer_bytes

    def as_gib(self) -> dict[str, float]:
        parts = ("frozen_bytes", "trainable_bytes", "grad_bytes", "optimizer_bytes", "total_bytes")
        return {p.removesuffix("_bytes"): getattr(self, p) / 2**30 for p in parts}


def _meta_safe(params: BaseModel) -> BaseModel:
    """Initialisations that read weights (PiSSA SVD, prompt init from text) cannot run on meta tensors;
    they do not change parameter counts, so estimate with the field's default."""
    if "init" in type(params).model_fields:
        return params.model_copy(update={"init": type(params).model_fields["init"].default})
    return params


def _is_quantized_linear(name: str, model: nn.Module) -> bool:
    """bitsandbytes quantizes every nn.Linear weight except the output head."""
    module_name = name.rsplit(".", 1)[0]
    if not name.endswith("base_layer.weight") and not name.endswith(".weight"):
        return False
    try:
        mod = model.get_submodule(module_name)
    except AttributeError:
        return False
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return isinstance(mod, nn.Linear) and mod is not head and "lora_" not in name


def base_weight_bytes(config: PretrainedConfig, weight_bytes: int = 4) -> int:
    """Bytes of the unadapted base model's weights (each tensor once) at ``weight_bytes`` per parameter."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(t.numel() for _name, t in unique_parameters(model)) * weight_bytes


def estimate_memory(
    config: PretrainedConfig,
    method: str,
    params: BaseModel | dict[str, Any] | None = None,
    *,
    weight_bytes: int = 4,
    optimizer: str = "adamw",
) -> MemoryEstimate:
    """Bytes a method needs for weights, grads and optimizer states, from the config alone."""
    entry = METHODS.get(method)
    if optimizer not in OPTIMIZER_STATE_BYTES:
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZER_STATE_BYTES)}")
    p = params if isinstance(params, BaseModel) else entry.Params(**(params or {}))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    quantized = entry.quantized_base  # a meta model cannot be quantized: the 4-bit storage is accounted for below
    model = entry().apply_on_meta(model, _meta_safe(p))
    q_bytes = four_bit_bytes_per_param(getattr(p, "double_quant", True))
    trainable = frozen = 0
    frozen_bytes = 0.0
    for name, t in unique_parameters(model):
        n = t.numel()
        if t.requires_grad:
            trainable += n
            continue
        frozen += n
        frozen_bytes += n * (q_bytes if quantized and _is_quantized_linear(name, model) else weight_bytes)
    return MemoryEstimate(
        trainable_params=trainable,
        frozen_params=frozen,
        frozen_bytes=round(frozen_bytes),
        trainable_bytes=trainable * 4,  # fp32 master weights
        grad_bytes=trainable * 4,
        optimizer_bytes=trainable * OPTIMIZER_STATE_BYTES[optimizer],
    )


def memory_table(model: str, optimizer: str = "adamw") -> list[dict[str, str]]:
    """One display row per registered method: trainable params and weights/grads/optimizer GiB at defaults."""
    from transformers import AutoConfig

    from ftatlas.methods import METHODS
    from ftatlas.models.loading import resolve_source

    config = AutoConfig.from_pretrained(resolve_source(model))
    rows = []
    for name in METHODS:
        try:
            e = estimate_memory(config, name, optimizer=optimizer)
        except ValueError as exc:  # e.g. bitfit on a bias-free model without add_bias
            reason = str(exc).split(";")[0].removeprefix(f"method {name}: ")
            rows.append({"method": name, "trainable params": "-", "frozen": "-", "trainable": "-",
                         "grads": "-", "optimizer": "-", "total": f"n/a ({reason})"})
            continue
        g = e.as_gib()
        rows.append({"method": name, "trainable params": f"{e.trainable_params:,}",
                     **{k: f"{g[v]:.3f}" for k, v in (("frozen", "frozen"), ("trainable", "trainable"),
                                                      ("grads", "grad"), ("optimizer", "optimizer"))},
                     "total": f"{g['total']:.3f}"})
    return rows
