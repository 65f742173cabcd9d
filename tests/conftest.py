"""Shared fixtures: a tiny random Llama (2 layers, hidden 64) with the SmolLM2 tokenizer, saved as a local dir."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from ftatlas.models.loading import load_tokenizer, resolve_source

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: the cores are shared out (subprocesses inherit it)
    THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)


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


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, tiny_model_dir) -> Callable[..., Any]:
    """``shared_run(**over)`` trains ``tiny_recipe(..., **over)`` once per session and returns that Session to
    every test asking with the same overrides; for tests that only read the run (one run, several checks)."""
    from ftatlas.pipeline import train
    from ftatlas.resolve import build_recipe

    sessions: dict[str, Any] = {}

    def get(**over: Any) -> Any:
        key = json.dumps(tiny_recipe(Path("model"), Path("out"), **over), sort_keys=True)
        if key not in sessions:
            out = tmp_path_factory.mktemp("shared-run")
            sessions[key] = train(build_recipe(tiny_recipe(tiny_model_dir, out, **over)), progress=False)
        return sessions[key]

    return get


@pytest.fixture(scope="session")
def lora_run(shared_run) -> Path:
    """A 3-step LoRA (r 4) run, trained once per session, for the export tests that read it."""
    return shared_run(method={"name": "lora", "r": 4}, train={"max_steps": 3, "lr": 1e-2}).run.path


@pytest.fixture(scope="session")
def notes_file(tmp_path_factory) -> Path:
    """12 paragraphs of plain text (a pretraining corpus)."""
    path = tmp_path_factory.mktemp("notes") / "notes.txt"
    path.write_text("\n\n".join(f"Paragraph {i}: the river runs past the old mill and the bridge." for i in range(12)))
    return path


def arena_file(tmp_path: Path, model_dir: Path, cells: list[dict]) -> Path:
    """An arena spec over the tiny model (2 steps per cell) with these cells, written to tmp_path/arena.yaml."""
    spec = {
        "name": "tiny",
        "model": {"name": str(model_dir)},
        "data": {"builtin": "contacts", "max_length": 128, "max_train": 16},
        "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "log_every": 1, "precision": "fp32"},
        "eval": {"max_examples": 4, "batch_size": 4, "decode": {"max_new_tokens": 8}},
        "output": {"dir": str(tmp_path / "arena")},
        "cells": cells,
    }
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# base, a LoRA and a failing cell (bias-free Llama without add_bias): the arena records the failure and goes on
THREE_CELLS = [{"name": "base", "method": "none"}, {"name": "lora", "method": {"name": "lora", "r": 4, "alpha": 8}},
               {"name": "broken", "method": "bitfit"}]


@pytest.fixture(scope="session")
def three_cell_arena(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path, list[dict]]:
    """One sequential run of THREE_CELLS (a subprocess per cell), shared by the tests that read it:
    (arena.yaml, its output root, its rows)."""
    from ftatlas.arena import load_arena, run_arena

    folder = tmp_path_factory.mktemp("arena-seq")
    path = arena_file(folder, tiny_model_dir, THREE_CELLS)
    root, rows = run_arena(load_arena(path), log=lambda m: None)
    return path, root, rows
