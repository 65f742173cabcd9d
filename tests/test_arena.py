"""The arena on the tiny model: cells run side by side, failures are recorded, resume skips finished cells."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser

import pytest
import yaml
from typer.testing import CliRunner

from ftatlas.arena import ArenaError, load_arena, run_arena
from ftatlas.arena.report import verdicts
from ftatlas.cli import app
from tests.conftest import arena_file


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_arena_runs_records_failures_resumes_and_reports(three_cell_arena):
    path, root, rows = three_cell_arena
    by = {r["cell"]: r for r in rows}
    assert by["base"]["status"] == "ok" and by["lora"]["status"] == "ok"
    assert by["broken"]["status"] == "failed" and "bias" in by["broken"]["error"]
    assert by["lora"]["trainable_params"] > 0 and by["base"]["trainable_params"] == 0
    assert by["lora"]["losses"] and by["lora"]["train_seconds"] > 0

    table = (root / "table.md").read_text()
    assert "| base |" in table and "failed:" in table and "[" in table  # intervals shown
    with open(root / "table.csv") as f:
        assert [r["cell"] for r in csv.DictReader(f)] == ["base", "lora", "broken"]
    parser = Tags()
    parser.feed((root / "report.html").read_text())
    assert parser.tags.count("img") == 3 and "table" in parser.tags
    for png in ("quality_vs_memory.png", "quality_vs_time.png", "loss_curves.png"):
        assert (root / png).stat().st_size > 1000

    stamp = (root / "cells" / "lora.json").stat().st_mtime_ns
    messages: list[str] = []
    _, again = run_arena(load_arena(path), log=messages.append)
    assert any("lora: finished before" in m for m in messages) and any("base: finished before" in m for m in messages)
    assert (root / "cells" / "lora.json").stat().st_mtime_ns == stamp
    assert [r["status"] for r in again] == ["ok", "ok", "failed"]  # the failed cell was tried again


def test_changed_cell_recipe_reruns_only_that_cell(tiny_model_dir, tmp_path):
    cells = [{"name": "base", "method": "none"}, {"name": "few", "method": "none", "context": "few_shot"}]
    path = arena_file(tmp_path, tiny_model_dir, cells)
    run_arena(load_arena(path), log=lambda m: None)
    cells[1]["context"] = {"mode": "few_shot", "k": 1}
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "cells": cells}))
    messages: list[str] = []
    _, rows = run_arena(load_arena(path), log=messages.append)
    assert any("base: finished before" in m for m in messages)
    assert not any("few: finished before" in m for m in messages)
    assert json.loads((tmp_path / "arena" / "tiny" / "cells" / "few.json").read_text())["status"] == "ok"


def test_bad_arena_files_and_cli(tiny_model_dir, tmp_path):
    with pytest.raises(ArenaError, match="repeated: a"):
        load_arena(arena_file(tmp_path, tiny_model_dir, [{"name": "a"}, {"name": "a"}]))
    with pytest.raises(ArenaError, match="cells"):
        load_arena(arena_file(tmp_path, tiny_model_dir, []))
    res = CliRunner().invoke(app, ["arena", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_verdicts_come_from_the_numbers():
    rows = [
        {"cell": "full", "status": "ok", "method": "full", "metrics": {"m": 0.90}, "ci95": {"m": [0.85, 0.95]},
         "peak_bytes": 8, "train_seconds": 100},
        {"cell": "lora", "status": "ok", "method": "lora", "metrics": {"m": 0.88}, "ci95": {"m": [0.83, 0.93]},
         "peak_bytes": 4, "train_seconds": 40},
        {"cell": "rag", "status": "ok", "method": "none", "metrics": {"m": 0.40}, "ci95": {"m": [0.30, 0.50]},
         "peak_bytes": 2, "train_seconds": 0, "prompt_tokens": 260},
        {"cell": "bad", "status": "ok", "method": "ia3", "metrics": {"m": 0.30}, "ci95": {"m": [0.2, 0.4]},
         "peak_bytes": 5, "train_seconds": 50},
        {"cell": "x", "status": "failed", "error": "boom"},
    ]
    v = verdicts(rows, "m")
    assert v["full"] == "best m"
    assert v["lora"].startswith("cheapest whose m interval overlaps the best")
    assert "lowest peak memory" in v["rag"] and "260 prompt tokens" in v["rag"]
    assert "dominated by lora" in v["bad"] and v["x"] == "failed"


def test_a_cell_better_on_another_metric_is_not_dominated():
    def cell(name: str, facts: float, form: float, seconds: float, ppl: float) -> dict:
        return {"cell": name, "status": "ok", "method": "lora", "peak_bytes": 4, "train_seconds": seconds,
                "metrics": {"facts": facts, "form": form, "perplexity": ppl}, "lower_is_better": ["perplexity"],
                "ci95": {"facts": [facts - 0.03, facts + 0.03], "form": [form - 0.03, form + 0.03],
                         "perplexity": [ppl - 0.5, ppl + 0.5]}}

    rows = [cell("zero", 0.02, 0.0, 0, 30.0), cell("lora", 0.0, 0.99, 100, 9.0), cell("worse", 0.0, 0.5, 120, 12.0)]
    v = verdicts(rows, "facts")
    assert "dominated" not in v["lora"]  # worse facts by a hair, far better form: no verdict against it
    assert "best form" in v["lora"] and "best perplexity" in v["lora"]  # lower perplexity is the better one
    assert "best facts" in v["zero"]
    assert "dominated by lora" in v["worse"]  # no better anywhere, clearly worse on form, dearer


def test_shipped_arena_files_resolve_every_cell(tmp_path):
    from pathlib import Path

    files = sorted(Path(__file__).parent.parent.joinpath("examples").glob("arena*.yaml"))
    assert files
    for f in files:
        spec = load_arena(f)
        for cell in spec.cells:
            spec.recipe_for(cell, str(tmp_path))  # raises RecipeError naming the cell if it does not validate


def test_table_shows_scaled_metrics_on_their_own_scale(tmp_path):
    from ftatlas.arena.report import table_rows

    rows = [{"cell": "a", "status": "ok", "method": "lora", "metrics": {"exact_match": 0.5, "perplexity": 12.345},
             "ci95": {"exact_match": [0.4, 0.6], "perplexity": [10.0, 15.0]}, "scales": {"perplexity": "ppl"},
             "lower_is_better": ["perplexity"], "peak_bytes": 2**30, "train_seconds": 10}]
    row = table_rows(rows)[0]
    assert row["exact_match"] == "50.0 [40.0, 60.0]"
    assert row["perplexity"] == "12.35 [10.00, 15.00]"  # not x100
