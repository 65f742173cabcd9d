"""Conformance matrix over the method registry (peft's TEST_CASES habit): every method, present and
future, trains on the tiny model, changes only what it claims, survives save -> plain reload, merges
when it says it can, matches its memory model, and runs through `ftatlas train` end to end.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from ftatlas.export.merge import merge_run
from ftatlas.methods import METHODS, PeftMethod, count_params
from ftatlas.methods.memory import estimate_memory
from ftatlas.methods.qlora import base_bytes
from ftatlas.recipe import dump_recipe
from ftatlas.resolve import build_recipe
from tests.conftest import tiny_recipe

# Settings that suit a 2-layer hidden-64 model; a method not listed is tested with its defaults.
TINY = {
    "freeze": {"top_n": 1},
    "lora": {"r": 4},
    "qlora": {"r": 4},
    "loha": {"r": 4},
    "lokr": {"r": 4},
    "vera": {"r": 16},
    "prefix": {"num_virtual_tokens": 4},
    "prompt": {"num_virtual_tokens": 4},
    "ptuning": {"num_virtual_tokens": 4},
    "bitfit": {"add_bias": True},
}
ALL = [n for n in METHODS.names() if METHODS.get(n).trains]  # `none` has its own tests
BATCH = torch.tensor([[1, 20, 300, 4000, 5, 60, 700, 8, 9, 10, 11, 12]] * 2)


def build(name: str, model_dir):
    method = METHODS.get(name)()
    params = method.Params(**TINY.get(name, {}))
    base = AutoModelForCausalLM.from_pretrained(model_dir, **method.load_options(params, "cpu"))
    return method, params, method.apply(base, params)


def fresh_base(name: str, model_dir):
    method = METHODS.get(name)()
    return AutoModelForCausalLM.from_pretrained(model_dir, **method.load_options(method.Params(), "cpu"))


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=BATCH).logits


def frozen_snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


@pytest.mark.parametrize("name", ALL)
def test_trains_only_what_it_claims_and_lowers_the_loss(name, tiny_model_dir):
    torch.manual_seed(0)  # adapter inits are random: the same start whatever ran before
    _, _, model = build(name, tiny_model_dir)
    frozen = frozen_snapshot(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable, f"{name} trains nothing"
    # LoRA's update is scaled by alpha/r = 2: at 1e-2 (dropout 0) its loss on this one batch oscillates
    opt = torch.optim.AdamW(trainable, lr=1e-3 if name in ("full", "lora", "qlora") else 1e-2)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(input_ids=BATCH, labels=BATCH).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"{name} changed frozen parameter {n}"


@pytest.mark.parametrize("name", ALL)
def test_save_then_plain_reload_gives_identical_logits(name, tiny_model_dir, tmp_path):
    _, _, model = build(name, tiny_model_dir)
    with torch.no_grad():  # move off the init point so a reload of the wrong weights would show
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    if isinstance(model, PeftModel):
        reloaded = PeftModel.from_pretrained(fresh_base(name, tiny_model_dir), tmp_path)
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(reloaded), logits(model))


# Mergeable adapters fold into the base here; full-model methods (full, freeze, bitfit) save model/ and have
# nothing to merge, a quantized base merges into the fp base (test_merge.py), the rest refuse (below).
MERGE_INTO_BASE = [n for n in ALL if METHODS.get(n).mergeable and issubclass(METHODS.get(n), PeftMethod)
                   and not METHODS.get(n).quantized_base]
UNMERGEABLE = [n for n in ALL if not METHODS.get(n).mergeable]


@pytest.mark.parametrize("name", MERGE_INTO_BASE)
def test_merge_matches_the_adapter(name, tiny_model_dir):
    _, _, model = build(name, tiny_model_dir)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    before = logits(model)
    merged = model.merge_and_unload()
    torch.testing.assert_close(logits(merged), before, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", UNMERGEABLE)
def test_merge_refuses_with_the_methods_reason(name, tiny_model_dir, tmp_path):
    recipe = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, method={"name": name, **TINY.get(name, {})}))
    (tmp_path / "recipe.yaml").write_text(dump_recipe(recipe))
    with pytest.raises(ValueError, match=f"method {name!r} cannot be merged: ") as err:
        merge_run(tmp_path)
    assert str(err.value).endswith(METHODS.get(name).merge_note)


@pytest.mark.parametrize("name", ALL)
def test_memory_model_matches_counted_parameters(name, tiny_model_dir):
    method, params, model = build(name, tiny_model_dir)
    est = estimate_memory(model.config if not isinstance(model, PeftModel) else model.base_model.model.config,
                          name, params)
    counted = count_params(model)
    assert est.trainable_params == counted.trainable
    assert est.trainable_params + est.frozen_params == counted.total
    assert est.grad_bytes == 4 * counted.trainable and est.optimizer_bytes == 8 * counted.trainable
    real_frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    if METHODS.get(name).quantized_base:  # constants (absmax) live outside the parameters: estimate is a bit above
        assert real_frozen <= est.frozen_bytes <= 1.15 * real_frozen
        assert base_bytes(fresh_base(name, tiny_model_dir)) < base_bytes(fresh_base("lora", tiny_model_dir))
    else:
        assert est.frozen_bytes == real_frozen


# `ftatlas train` settings for the end-to-end cell; tests elsewhere that read a method's run share it (shared_run).
E2E = {"train": {"max_steps": 2, "lr": 1e-2}, "eval": {"max_examples": 2, "decode": {"max_new_tokens": 4}}}


def method_run(shared_run, name: str):
    """The end-to-end run of a method with its TINY settings, trained once per session."""
    return shared_run(method={"name": name, **TINY.get(name, {})}, **E2E)


@pytest.mark.parametrize("name", ALL)
def test_ftatlas_train_runs_every_method_end_to_end(name, shared_run):
    s = method_run(shared_run, name)
    assert s.results["after"]["n"] == 2
    assert (s.run.adapter_dir if isinstance(s.results["fit"].model, PeftModel) else s.run.model_dir).is_dir()
    assert len([r for r in s.run.read_metrics() if "loss" in r]) == 2
