"""Varlen attention for packed rows on any device: causal SDPA per sequence from ``cu_seq_lens_q``.

transformers' own answer to packed ``position_ids`` under ``sdpa`` is a dense block-diagonal
``[T, T]`` mask, which computes (and stores) attention between every pair of tokens in the row and
then throws most of it away; flash-attention varlen avoids that but is CUDA-only. This function is
registered as the ``ftatlas_varlen`` attention implementation: given the varlen keywords that
``data/packing.PackedCollator`` emits, it runs ``scaled_dot_product_attention(is_causal=True)`` on
each sequence's slice, so the work is sum(n_i^2) instead of T^2; without them (generation, padded
batches) it is exactly transformers' ``sdpa``.

Each sequence's slice can be zero-padded at its end to a multiple of ``pad_multiple`` tokens (set by
``use_varlen_attention``): under the causal mask no real query sees the padding keys, so the real outputs are
unchanged, and the attention kernels meet a few lengths instead of every row's own. On CPU that matters: bf16
attention runs on JIT-compiled oneDNN kernels cached per shape (a few hundred KiB each), so rows of ever-new
lengths made resident memory climb step after step (tiny Llama, packed 8 x ~150-token rows: +190 MiB over 40
steps; 64-token buckets: flat after the first few).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "ftatlas_varlen"
PAD_ATTR = "_ftatlas_pad_multiple"  # set on attention modules by use_varlen_attention


def _bounds(query: torch.Tensor, kwargs: dict[str, Any]) -> list[int] | None:
    """Sequence start offsets (plus the end) of a packed ``[1, T]`` row, or None when the row is one sequence."""
    if query.shape[0] != 1:
        return None
    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None:
        return cu.tolist()
    pos = kwargs.get("position_ids")
    if pos is None or pos.shape[-1] != query.shape[2]:
        return None
    starts = (pos.reshape(-1) == 0).nonzero().flatten().tolist()
    return [*starts, query.shape[2]] if len(starts) > 1 and starts[0] == 0 else None


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """``query [1, H, T, D]``, ``key/value [1, Hkv, T, D]`` -> ``[1, T, H, D]`` (transformers' layout)."""
    bounds = _bounds(query, kwargs) if attention_mask is None and key.shape[2] == query.shape[2] else None
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    gqa = query.shape[1] != key.shape[1]
    p = dropout if module.training else 0.0
    multiple = getattr(module, PAD_ATTR, 1)

    def attend(s: int, e: int) -> torch.Tensor:
        q, k, v = query[:, :, s:e], key[:, :, s:e], value[:, :, s:e]
        pad = -(e - s) % multiple
        if pad:  # zeros after the last real token: causal, so no real query attends to them
            q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, scale=scaling, enable_gqa=gqa)
        return out[:, :, :e - s] if pad else out

    out = torch.cat([attend(s, e) for s, e in zip(bounds[:-1], bounds[1:], strict=True)], dim=2)
    return out.transpose(1, 2).contiguous(), None


def varlen_mask(batch_size: int, q_length: int, kv_length: int, attention_mask: torch.Tensor | None = None,
                use_vmap: bool = False, **kwargs: Any) -> torch.Tensor | None:
    """No mask for a single unpadded row without cache (causal or packed: the attention handles both);
    otherwise exactly sdpa's mask. Skips building transformers' dense ``[T, T]`` block-diagonal mask."""
    if batch_size == 1 and attention_mask is None and q_length == kv_length and not use_vmap:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, attention_mask=attention_mask,
                     use_vmap=use_vmap, **kwargs)


AttentionInterface.register(NAME, varlen_attention_forward)
AttentionMaskInterface.register(NAME, varlen_mask)


def use_varlen_attention(model: torch.nn.Module, device: str = "cpu", pad_multiple: int = 1) -> bool:
    """Switch a transformers model (or a PEFT wrapper of one) from ``sdpa`` to per-sequence attention.

    On CUDA with flash-attention installed that is ``flash_attention_2`` (its varlen kernel reads the same
    ``cu_seq_lens``; not verified on a GPU here), elsewhere ``ftatlas_varlen``. Only ``sdpa`` is switched
    (eager/flex users keep theirs); returns whether it switched. ``pad_multiple``: see the module docstring.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    base.set_attn_implementation("flash_attention_2" if flash_attention_available(device) else NAME)
    for module in base.modules():
        if type(module).__name__.endswith("Attention"):
            setattr(module, PAD_ATTR, max(1, pad_multiple))
    return True


def flash_attention_available(device: str) -> bool:
    """flash-attention 2 is importable and the device is CUDA."""
    return device == "cuda" and importlib.util.find_spec("flash_attn") is not None
