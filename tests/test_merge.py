"""`ftatlas merge`: the merged model is re-scored against its adapter; impossible merges say why."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.export.merge import merge_run
from ftatlas.models.trained import load_run_or_model
from ftatlas.pipeline import train
from ftatlas.resolve import build_recipe
from tests.conftest import tiny_recipe
from tests.test_method_matrix import method_run

IDS = torch.tensor([[1, 20, 300, 4000, 5, 60, 700, 8]])


def run(tiny_model_dir, tmp_path, method):
    return train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, method=method,
                                          train={"max_steps": 3, "lr": 1e-2})), progress=False)


def test_lora_merge_equals_adapter_and_loads_plainly(tiny_model_dir, tmp_path):
    s = run(tiny_model_dir, tmp_path, {"name": "lora", "r": 4})
    res = CliRunner().invoke(app, ["merge", str(s.run.path)])
    assert res.exit_code == 0, res.output
    assert "(OK)" in res.output
    report = json.loads((s.run.path / "merge.json").read_text())
    assert report["within_tolerance"] and report["max_abs_logit_diff"] < 1e-3 and report["prompts_checked"] == 8
    merged = AutoModelForCausalLM.from_pretrained(s.run.path / "merged").eval()
    adapter, _, _ = load_run_or_model(str(s.run.path))
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=IDS).logits, adapter.model(input_ids=IDS).logits,
                                   atol=1e-4, rtol=1e-4)


def test_qlora_merges_into_the_full_precision_base(tiny_model_dir, tmp_path):
    s = run(tiny_model_dir, tmp_path, {"name": "qlora", "r": 4})
    r = merge_run(s.run.path, tmp_path / "out")
    assert r.within_tolerance and r.vs_trained_4bit is not None and r.vs_trained_4bit > r.max_abs_logit_diff
    assert (tmp_path / "out" / "config.json").is_file()
    assert "quantization_config" not in json.loads((tmp_path / "out" / "config.json").read_text())


@pytest.mark.parametrize("method, message", [("prompt", "cannot be merged: prompt tuning"),
                                             ("full", "nothing to merge")])
def test_merge_refusals_say_why(shared_run, method, message):
    s = method_run(shared_run, method)  # the method matrix's run (prompt: 4 virtual tokens)
    res = CliRunner().invoke(app, ["merge", str(s.run.path)])
    assert res.exit_code == 2 and message in res.output
