"""QLoRA on CPU: a genuinely 4-bit base (bitsandbytes), LoRA on top, plain-peft reload, clear errors."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from ftatlas.methods import METHODS, count_params
from ftatlas.methods.qlora import require_bitsandbytes
from ftatlas.models.trained import load_run_or_model
from ftatlas.pipeline import train
from ftatlas.resolve import build_recipe
from tests.conftest import tiny_recipe

IDS = torch.tensor([[1, 20, 300, 4000, 5, 60, 700, 8]])


def test_qlora_trains_on_a_4bit_base_and_reloads_with_plain_peft(tiny_model_dir, tmp_path):
    import bitsandbytes as bnb

    s = train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, method={"name": "qlora", "r": 4},
                                       train={"max_steps": 3})), progress=False)
    model = s.results["fit"].model
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(q.base_layer, bnb.nn.Linear4bit)  # never a silent unquantized fallback
    assert "quantized" in s.results["quantization"] and "smaller" in s.results["quantization"]
    assert "4-bit base" in (s.run.path / "report.md").read_text()
    opts = METHODS.get("qlora")().load_options(METHODS.get("qlora").Params(), "cpu")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, **opts)
    reloaded = PeftModel.from_pretrained(base, s.run.adapter_dir).eval()
    ours, _, _ = load_run_or_model(str(s.run.path))
    model.eval()
    with torch.no_grad():
        plain = reloaded(input_ids=IDS).logits
        torch.testing.assert_close(plain, ours.model(input_ids=IDS).logits)  # plain peft == ftatlas reload
        # bitsandbytes' CPU backend repacks 4-bit weights after the first inference pass and dequantizes in
        # the compute dtype (bf16) from then on, so the in-memory model differs by bf16 rounding only.
        assert (plain - model(input_ids=IDS).logits).abs().max() < 1e-2


def test_qlora_base_is_smaller_and_lora_count_matches_lora(tiny_model_dir, tiny_model):
    qlora = METHODS.get("qlora")()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, **qlora.load_options(qlora.Params(), "cpu"))
    linear_bytes_fp32 = sum(m.weight.numel() * 4 for m in tiny_model.modules() if isinstance(m, torch.nn.Linear)
                            and m is not tiny_model.lm_head)
    from ftatlas.methods.qlora import base_bytes

    assert base_bytes(tiny_model) - base_bytes(base) > 0.8 * linear_bytes_fp32 * (1 - 1 / 8 - 0.05)
    adapted = qlora.apply(base, qlora.Params(r=4))
    lora = METHODS.get("lora")().apply(tiny_model, METHODS.get("lora").Params(r=4))
    assert count_params(adapted).trainable == count_params(lora).trainable
    assert count_params(adapted).total == count_params(lora).total  # 4-bit weights counted at logical size


def test_qlora_refuses_an_unquantized_base(tiny_model):
    with pytest.raises(ValueError, match="not loaded in 4-bit"):
        METHODS.get("qlora")().apply(tiny_model, METHODS.get("qlora").Params())


def test_missing_bitsandbytes_says_what_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(ValueError, match=r"pip install 'ftatlas\[qlora\]'"):
        require_bitsandbytes("cpu")


def test_old_bitsandbytes_on_cpu_is_refused(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.43.1")
    with pytest.raises(ValueError, match="needs bitsandbytes>=0.46 .found 0.43.1"):
        require_bitsandbytes("cpu")
