"""An arena cell's `export:` list adds rows re-scored on the same held-out split; unknown formats fail at load."""

from __future__ import annotations

import pytest

from ftatlas.arena import ArenaError, load_arena, run_arena
from tests.conftest import arena_file


def test_export_rows_join_the_table_and_are_reused_when_unchanged(tiny_model_dir, tmp_path):
    cells = [{"name": "lora", "method": {"name": "lora", "r": 4, "alpha": 8},
              "export": ["safetensors:bf16", "bnb-4bit"]}]
    spec = load_arena(arena_file(tmp_path, tiny_model_dir, cells))
    root, rows = run_arena(spec, log=lambda m: None)
    assert [r["cell"] for r in rows] == ["lora", "lora@safetensors:bf16", "lora@bnb-4bit"]
    assert all(r["status"] == "ok" for r in rows), rows
    bf16, nf4 = rows[1], rows[2]
    assert bf16["n"] == rows[0]["n"] == 4 and set(bf16["metrics"]) == set(rows[0]["metrics"])
    assert bf16["size_bytes"] > 0 and bf16["method"] == "lora -> safetensors:bf16"
    assert (root / "cells" / "lora" / "exports" / "bnb-4bit" / "export.json").is_file() and nf4["ci95"]
    assert "| lora@safetensors:bf16 |" in (root / "table.md").read_text()
    messages: list[str] = []
    _, again = run_arena(spec, log=messages.append)
    assert not any("exported" in m for m in messages) and again[1:] == rows[1:]


def test_unknown_export_format_fails_when_the_arena_loads(tiny_model_dir, tmp_path):
    cells = [{"name": "lora", "method": "lora", "export": ["onnx:int4"]}]
    with pytest.raises(ArenaError, match="unknown export format 'onnx'"):
        load_arena(arena_file(tmp_path, tiny_model_dir, cells))
