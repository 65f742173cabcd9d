"""A method is one module: a throwaway method registered here, with no other file edited, runs through
train, eval, merge, advise and the memory model, and the objectives refuse it from its capability attributes
alone (never from its name)."""

from __future__ import annotations

import pytest
from peft import LoraConfig, PeftModel
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from transformers import AutoConfig

from ftatlas.advise.advisor import advise
from ftatlas.advise.decision_map import leaf_methods
from ftatlas.export.merge import merge_run
from ftatlas.methods import METHODS, PeftMethod, count_params
from ftatlas.methods.memory import estimate_memory, memory_table
from ftatlas.pipeline import train
from ftatlas.recipe import RecipeError
from ftatlas.resolve import build_recipe
from tests.conftest import tiny_recipe


class ToyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(2, ge=1, description="rank")


class Toy(PeftMethod):
    """Rank-r updates on the value projections only: nothing any central module knows by name."""

    summary = "test-only: low-rank updates on v_proj"
    Params = ToyParams
    decision_leaves = {"G": -1}  # ranks before lora at the map's PEFT leaf
    min_rows = 10_000

    def peft_config(self, params: ToyParams, model: nn.Module) -> LoraConfig:
        return LoraConfig(r=params.r, lora_alpha=2 * params.r, target_modules=["v_proj"], task_type="CAUSAL_LM")


class ToyPrompt(Toy):
    """Claims what a prompt-learning method is; the objectives must read it."""

    prompt_learning = True  # so supports_packing derives False
    prepends_tokens = True
    score_head = False
    per_token_logits = False
    decision_leaves = {}


@pytest.fixture
def toy(monkeypatch):
    for name, cls in (("toy", Toy), ("toy_prompt", ToyPrompt)):
        monkeypatch.setattr(cls, "name", name)
        monkeypatch.setitem(METHODS._entries, name, cls)  # registered for this test only
    return Toy


def test_capabilities_are_derived_where_they_can_be(toy):
    assert Toy.mergeable and Toy.supports_packing
    assert METHODS.get("prompt").prompt_learning and not METHODS.get("prompt").supports_packing
    assert not METHODS.get("prompt").mergeable and METHODS.get("lora").mergeable
    assert [n for n in METHODS if METHODS.get(n).quantized_base] == ["qlora"]


def test_a_new_method_trains_evaluates_merges_and_is_sized(toy, tiny_model_dir, tmp_path):
    s = train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, method={"name": "toy", "r": 2},
                                       train={"max_steps": 2, "lr": 1e-2},
                                       eval={"max_examples": 2, "decode": {"max_new_tokens": 4}})), progress=False)
    model = s.results["fit"].model
    assert isinstance(model, PeftModel) and s.run.adapter_dir.is_dir()
    assert s.results["after"]["n"] == 2
    # names end in <module>.lora_A.default.weight
    trained = sorted({n.split(".")[-4] for n, p in model.named_parameters() if p.requires_grad})
    assert trained == ["v_proj"]

    merged = merge_run(s.run.path, tmp_path / "merged", n_prompts=2)
    assert merged.within_tolerance and merged.vs_trained_4bit is None

    config = AutoConfig.from_pretrained(tiny_model_dir)
    est = estimate_memory(config, "toy", {"r": 2})
    assert est.trainable_params == count_params(model).trainable
    assert any(row["method"] == "toy" and row["trainable params"] == f"{est.trainable_params:,}"
               for row in memory_table(str(tiny_model_dir)))


def test_the_advisor_reads_the_new_method(toy, tiny_model_dir, chat_file):
    assert leaf_methods("G")[:2] == ("toy", "lora")
    a = advise(str(tiny_model_dir), str(chat_file), "style", memory_gb=8, batch_size=4)
    row = next(r for r in a.rows if r.method == "toy")
    assert row.fits and row.estimate.peak_bytes > 0
    assert a.method == "toy" and a.walk.leaf == "G"
    assert any("24 training rows is little for toy (we suggest >= 10000)" in n for n in a.notes)


@pytest.mark.parametrize("objective, says", [
    ("cpo", "virtual tokens that method toy_prompt prepends"),
    ("orpo", "virtual tokens that method toy_prompt prepends"),
    ("reward", "not RewardTrainer's score head"),
    ("dpo", "fused LM-head output"),
    ("kto", "fused LM-head output"),
])
def test_objectives_refuse_by_capability(toy, tiny_model_dir, tmp_path, objective, says):
    recipe = tiny_recipe(tiny_model_dir, tmp_path, method={"name": "toy_prompt"}, objective={"name": objective})
    with pytest.raises(RecipeError, match=says) as err:
        build_recipe(recipe)
    assert "use one of" in str(err.value) and "toy_prompt" not in str(err.value).split("use one of")[1]
    build_recipe(tiny_recipe(tiny_model_dir, tmp_path, method={"name": "toy"}, objective={"name": objective}))


def test_estimates_read_prompt_learning_from_the_method(toy, tiny_model_dir):
    """The step estimate pads (no packing) and counts virtual tokens for whatever method declares them."""
    from ftatlas.advise.estimate import DataShape, StepSpec, estimate_step

    config = AutoConfig.from_pretrained(tiny_model_dir)
    data = DataShape.from_lengths([100] * 8)
    spec = StepSpec(batch_size=4, autocast=False, pad_multiple=64)
    assert estimate_step(config, "toy", data, spec).filler_tokens == 63 / 2  # packed rows round up to 64
    assert estimate_step(config, "toy_prompt", data, spec).filler_tokens == 0.0  # padded: prompt_learning
    five, one = (estimate_step(config, "prompt", data, spec, {"num_virtual_tokens": k}).tokens for k in (5, 1))
    assert five - one == 4 * 4  # 4 more virtual tokens in each of 4 rows
