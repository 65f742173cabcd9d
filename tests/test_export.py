"""`ftatlas export`: each artifact loads in its real consumer, matches the run's logits within the stated bound,
and is re-scored on the held-out split next to the run."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.export.api import export_run
from ftatlas.export.source import ExportError
from ftatlas.models.trained import load_run_or_model
from ftatlas.pipeline import train
from ftatlas.recipe import build_recipe
from tests.conftest import tiny_recipe

IDS = torch.tensor([[1, 20, 300, 4000, 5, 60, 700, 8]])


def test_safetensors_is_bf16_loads_plainly_and_matches_the_run(lora_run, tmp_path):
    res = CliRunner().invoke(app, ["export", str(lora_run), "--to", "safetensors", "--out", str(tmp_path / "st")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "st" / "export.json").read_text())
    assert report["format"] == "safetensors" and report["quant"] == "bf16" and report["consumer"] == "transformers"
    # bf16 on disk: about half of the fp32 source (the tokenizer files add a little)
    assert report["size_bytes"] < 0.6 * report["source_fp32_bytes"] + 5e6
    lp = report["logit_parity"]
    assert lp["within_tolerance"] and lp["top1_agreement"] > 0.9 and lp["prompts"] == 4
    assert set(report["export"]["metrics"]) == set(report["reference"]["metrics"]) and report["export"]["n"] == 4
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "st" / "model")
    assert model.dtype == torch.bfloat16
    run_model = load_run_or_model(str(lora_run))[0].model
    with torch.no_grad():
        torch.testing.assert_close(model.float()(input_ids=IDS).logits, run_model(input_ids=IDS).logits,
                                   atol=0.05, rtol=0.05)
    assert "held-out re-score" in res.output and "argmax agrees" in res.output
    assert "in transformers: loaded in" in res.output and "peak RSS added" in res.output


def test_f32_safetensors_is_exact(lora_run, tmp_path):
    report = export_run(lora_run, "safetensors", "f32", tmp_path / "f32", progress=False)
    assert report["logit_parity"]["rel_diff"] < 1e-5 and report["logit_parity"]["top1_agreement"] == 1.0
    assert not report["drops"] and report["ok"]


@pytest.mark.parametrize("args, message", [
    (["--to", "onnx"], "unknown export format 'onnx'"),
    (["--to", "safetensors", "--quant", "q4_k_m"], "takes --quant bf16 | f16 | f32"),
])
def test_bad_format_or_quant_says_what_is_known(lora_run, args, message):
    res = CliRunner().invoke(app, ["export", str(lora_run), *args])
    assert res.exit_code == 2 and message in res.output


def test_a_method_none_run_exports_its_base(tiny_model_dir, tmp_path):
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "runs", method={"name": "none"})
    run = train(build_recipe(recipe), progress=False).run.path
    report = export_run(run, "safetensors", "f32", tmp_path / "f32", progress=False)
    assert report["ok"] and report["logit_parity"]["rel_diff"] < 1e-5
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "f32" / "model").eval()
    with torch.no_grad():
        assert torch.allclose(base(input_ids=IDS).logits, exported(input_ids=IDS).logits, atol=1e-5)


def test_prompt_tuning_run_cannot_be_one_model(shared_run):
    from tests.test_method_matrix import method_run

    run = method_run(shared_run, "prompt").run.path  # the method matrix's run: 4 virtual tokens
    with pytest.raises(ExportError, match="cannot be exported as one model"):
        export_run(run, "safetensors", progress=False)


@pytest.mark.parametrize("fmt, quant, layer", [("bnb-4bit", "nf4", "Linear4bit"), ("bnb-8bit", None, "Linear8bitLt")])
def test_bitsandbytes_exports_reload_quantized_from_disk_and_rescore(lora_run, tmp_path, fmt, quant, layer):
    report = export_run(lora_run, fmt, quant, tmp_path / fmt, progress=False)
    config = json.loads((tmp_path / fmt / "model" / "config.json").read_text())
    assert config["quantization_config"]["load_in_4bit" if "4" in fmt else "load_in_8bit"] is True
    model = AutoModelForCausalLM.from_pretrained(tmp_path / fmt / "model", device_map={"": "cpu"})
    assert type(model.model.layers[0].mlp.up_proj).__name__ == layer
    lp = report["logit_parity"]
    assert lp["tolerance"] is None and 0 < lp["rel_diff"] < 0.5 and lp["top1_agreement"] > 0.5
    assert report["export"]["n"] == 4 and set(report["export"]["metrics"]) == set(report["reference"]["metrics"])
