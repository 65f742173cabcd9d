"""Shared fixtures: a tiny random Llama (2 layers, hidden 64) with the SmolLM2 tokenizer, saved as a local dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ftatlas.models.loading import load_tokenizer, resolve_source


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer(resolve_source("smollm2-135m"))


def tiny_config(tok, **kw) -> LlamaConfig:
    cfg = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
               tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
               bos_token_id=tok.bos_token_id)
    cfg.update(kw)
    return LlamaConfig(**cfg)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A saved tiny model dir usable anywhere a model name is expected (recipes, CLI)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_model(tokenizer):
    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config(tokenizer))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def chat_file(tmp_path) -> Path:
    """24 messages-format rows: a learnable mapping (word -> word upper-cased)."""
    words = ["apple", "river", "stone", "cloud", "maple", "tiger", "pearl", "ember", "frost", "lemon", "orbit",
             "piano", "quilt", "raven", "sugar", "tulip", "umbra", "vapor", "willow", "xenon", "yacht", "zebra",
             "amber", "birch"]
    rows = [{"messages": [{"role": "user", "content": f"Shout: {w}"}, {"role": "assistant", "content": w.upper()}]}
            for w in words]
    return write_jsonl(tmp_path / "chat.jsonl", rows)


def tiny_recipe(model_dir: Path, out_dir: Path, **over) -> dict:
    """A recipe dict that trains the tiny model for a few steps on the built-in task."""
    r = {
        "model": {"name": str(model_dir)},
        "data": {"builtin": "contacts", "max_length": 128, "max_train": 32},
        "method": {"name": "lora", "r": 4, "alpha": 8},
        "train": {"max_steps": 4, "batch_size": 4, "lr": 1e-3, "log_every": 1, "precision": "fp32"},
        "eval": {"max_examples": 4, "batch_size": 4, "decode": {"max_new_tokens": 8}},
        "output": {"dir": str(out_dir), "name": "tiny"},
    }
    for k, v in over.items():
        merge = isinstance(v, dict) and k != "method"  # a method block is replaced whole (params differ)
        r[k] = {**r.get(k, {}), **v} if merge else v
    return r
