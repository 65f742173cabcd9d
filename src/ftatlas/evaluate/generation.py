"""Batched generation with left padding and KV cache, under the same autocast as training."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from ftatlas.recipe import DecodeSpec


def generation_config(decode: DecodeSpec, tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    sample = decode.do_sample
    return GenerationConfig(
        max_new_tokens=decode.max_new_tokens,
        do_sample=sample,
        temperature=decode.temperature if sample else None,
        top_k=decode.top_k if sample else None,
        top_p=decode.top_p if sample else None,
        num_beams=decode.num_beams,
        repetition_penalty=decode.repetition_penalty,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
    )


def autocast_ctx(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=dtype)


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    decode: DecodeSpec,
    *,
    batch_size: int = 16,
    autocast: torch.dtype | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> list[str]:
    """Answer each rendered prompt (templates already applied). Deterministic for a given decode.seed."""
    model.eval()
    device = next(model.parameters()).device
    cfg = generation_config(decode, tokenizer)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    outs: list[str] = []
    torch.manual_seed(decode.seed)
    try:
        with tqdm(total=len(prompts), desc=desc, unit="ex", disable=not progress) as bar:
            for chunk in _batches(prompts, batch_size):
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                with autocast_ctx(device.type, autocast):
                    ids = model.generate(**enc, generation_config=cfg)
                outs += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                bar.update(len(chunk))
    finally:
        tokenizer.padding_side = side
    return [o.strip() for o in outs]
