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
    # an export row's cost is its artifact's in the consumer: memory added by load + scoring, scoring time;
    # it trains nothing, so its train time and trainable params read "—", not a false 0
    assert bf16["memory_kind"] == "rss_added" and bf16["peak_bytes"] > 0 and bf16["latency_s"] > 0
    assert bf16["score_seconds"] > 0 and bf16["load_seconds"] > 0 and "train_seconds" not in bf16
    lines = [ln for ln in (root / "table.md").read_text().splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    row = dict(zip(head, (c.strip() for c in next(ln for ln in lines if ln.startswith("| lora@safetensors:bf16 |"))
                          .strip("|").split("|")), strict=True))
    assert row["train time"] == row["trainable params"] == "—" and row["peak memory"].endswith("GiB RSS (artifact)")
    messages: list[str] = []
    _, again = run_arena(spec, log=messages.append)
    assert not any("exported" in m for m in messages) and again[1:] == rows[1:]


def test_unknown_export_format_fails_when_the_arena_loads(tiny_model_dir, tmp_path):
    cells = [{"name": "lora", "method": "lora", "export": ["onnx:int4"]}]
    with pytest.raises(ArenaError, match="unknown export format 'onnx'"):
        load_arena(arena_file(tmp_path, tiny_model_dir, cells))
