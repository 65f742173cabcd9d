"""Quantized transformers exports beyond bitsandbytes: torchao int8 and llmcompressor GPTQ round-trip on the tiny
model (saved, reloaded by plain ``from_pretrained``, logits close to the run, re-scored); AWQ says it needs CUDA."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.export.api import export_run
from ftatlas.extras import MissingExtra
from ftatlas.models.trained import load_run_or_model

IDS = torch.tensor([[1, 20, 300, 4000, 5, 60, 700, 8]])
# int8 weights with per-row scales and bf16 activations: stated bound on max |logit diff| / max |logit|
INT8_REL = 0.15


def test_int8_round_trips_through_plain_from_pretrained(lora_run, tmp_path):
    pytest.importorskip("torchao")
    report = export_run(lora_run, "int8", None, tmp_path / "int8", progress=False)
    config = json.loads((tmp_path / "int8" / "model" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "int8" / "model", device_map={"": "cpu"})
    weight = model.model.layers[0].mlp.up_proj.weight
    assert type(weight).__name__ == "Int8Tensor" and weight.qdata.dtype == torch.int8
    run_model = load_run_or_model(str(lora_run))[0].model
    with torch.no_grad():
        a, b = run_model(input_ids=IDS).logits, model(input_ids=IDS).logits.float()
    assert (a - b).abs().max() / a.abs().max() < INT8_REL and (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9
    lp = report["logit_parity"]
    assert lp["tolerance"] == INT8_REL and lp["within_tolerance"] and 0 < lp["rel_diff"] < INT8_REL
    assert report["export"]["n"] == 4 and set(report["export"]["metrics"]) == set(report["reference"]["metrics"])
    assert report["consumer_cost"]["memory_kind"] == "rss_added" and report["consumer_cost"]["load_seconds"] > 0


def test_int8_without_torchao_names_the_extra(lora_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(MissingExtra, match=r"--to int8 .* pip install 'ftatlas\[quant\]'$"):
        export_run(lora_run, "int8", None, tmp_path / "int8", progress=False)
    assert not (tmp_path / "int8" / "model").exists()


CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("fmt", ["gptq", pytest.param("awq", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not CUDA, reason="llmcompressor's AWQ needs a CUDA GPU")])])
def test_gptq_and_awq_calibrate_and_reload_from_compressed_tensors(lora_run, tmp_path, fmt):
    pytest.importorskip("llmcompressor")
    report = export_run(lora_run, fmt, None, tmp_path / fmt, progress=False)
    qc = json.loads((tmp_path / fmt / "model" / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized"
    weights = qc["config_groups"]["group_0"]["weights"]
    # the tiny model is 64 wide: llmcompressor needs whole groups, so 64 rather than the usual 128
    assert weights["num_bits"] == 4 and weights["group_size"] == report["group_size"] == 64
    assert weights["symmetric"] is (fmt == "gptq") and report["calibration_rows"] > 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / fmt / "model", device_map={"": "cpu"})
    run_model = load_run_or_model(str(lora_run))[0].model
    with torch.no_grad():
        a, b = run_model(input_ids=IDS).logits, model(input_ids=IDS).logits.float()
    # 4-bit: no logit bound in the report (judged by the metric interval); here a loose one against a broken load
    assert (a - b).abs().max() / a.abs().max() < 0.5 and (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.5
    assert not torch.equal(a, b)  # it was quantized
    assert report["logit_parity"]["tolerance"] is None and report["export"]["n"] == 4


@pytest.mark.skipif(CUDA, reason="the message is for machines without CUDA")
def test_awq_on_cpu_says_it_needs_a_cuda_gpu(lora_run, tmp_path):
    res = CliRunner().invoke(app, ["export", str(lora_run), "--to", "awq", "--out", str(tmp_path / "awq")])
    text = " ".join(res.output.split())  # one message, however the terminal wraps it
    assert res.exit_code == 2 and text.startswith("error: --to awq needs a CUDA GPU") and "use --to gptq" in text
    assert not (tmp_path / "awq").exists()


def test_gptq_without_llmcompressor_names_the_extra(lora_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "llmcompressor", None)
    with pytest.raises(MissingExtra, match=r"--to gptq needs llmcompressor: pip install 'ftatlas\[gptq\]'$"):
        export_run(lora_run, "gptq", None, progress=False)
