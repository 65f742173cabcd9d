"""The real thing: the quickstart path on SmolLM2-135M, shortened, must clearly beat the base model."""

from __future__ import annotations

import pytest

from ftatlas.pipeline import train
from ftatlas.quickstart import quickstart_recipe


@pytest.mark.slow
def test_quickstart_lora_beats_base_by_20_points(tmp_path):
    recipe = quickstart_recipe([f"output.dir={tmp_path}", "train.max_steps=30", "eval.max_examples=40"])
    s = train(recipe, eval_before=True, progress=False)
    before = s.results["before"]["metrics"]["json_match"]
    after = s.results["after"]["metrics"]["json_match"]
    assert after - before >= 0.20, (before, after)
    for name in ("eval_before.json", "eval_after.json", "eval.json", "report.md", "metrics.jsonl"):
        assert (s.run.path / name).is_file()
    assert (s.run.adapter_dir / "adapter_model.safetensors").is_file()
