"""Defaults that are decisions: the auto training budget, early stopping, per-method learning rates and the
memory-decided gradient checkpointing (objectives/budget.py, advise/checkpointing.py)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from ftatlas.advise.advisor import Row, _choose
from ftatlas.advise.checkpointing import decide, plan_checkpointing
from ftatlas.advise.decision_map import Facts, walk
from ftatlas.advise.recipes import plan
from ftatlas.arena.report import kept_step_text
from ftatlas.data.readers import read_file
from ftatlas.data.templating import encode_all
from ftatlas.methods import METHODS
from ftatlas.objectives.budget import MAX_AUTO_EPOCHS, MAX_AUTO_STEPS, TARGET_LOSS_TOKENS, plan_budget
from ftatlas.pipeline import train
from ftatlas.recipe import RecipeError, TrainSpec, build_recipe
from ftatlas.run_report import eval_loss_curve
from tests.conftest import tiny_config, tiny_recipe, write_jsonl

# --- the budget rule ------------------------------------------------------------------------------------------


def test_auto_budget_trains_small_label_sets_for_more_epochs_and_large_sets_once():
    t = TrainSpec()
    labels = plan_budget(t, steps_per_epoch=40, loss_tokens_per_epoch=900, has_eval=True)  # 320 one-word labels
    assert labels.epochs == 10 and labels.max_steps == -1  # ceil(8192/900) = 10
    records = plan_budget(t, steps_per_epoch=50, loss_tokens_per_epoch=10_400, has_eval=True)  # contacts-like
    assert records.epochs == 1
    mid = plan_budget(t, steps_per_epoch=50, loss_tokens_per_epoch=3000, has_eval=True)
    assert mid.epochs == 3  # ceil(8192/3000)
    huge = plan_budget(t, steps_per_epoch=12_500, loss_tokens_per_epoch=2_000_000, has_eval=True)
    assert huge.epochs == 1 and huge.max_steps == MAX_AUTO_STEPS
    assert all(b.early_stopping for b in (labels, records, mid, huge))
    assert f"{TARGET_LOSS_TOKENS:,}" in labels.reason and "early stopping" in labels.reason


def test_auto_eval_interval_is_about_ten_passes_and_at_most_two_an_epoch():
    t = TrainSpec()
    labels = plan_budget(t, 40, 900, True)  # 400 steps planned
    assert labels.eval_every == 40
    records = plan_budget(t, 50, 10_400, True)  # 50 steps: 2 an epoch at most
    assert records.eval_every == 25
    assert plan_budget(t, 1, 10, True).eval_every == 1 and plan_budget(t, 1, 10, True).epochs == MAX_AUTO_EPOCHS


def test_explicit_budget_means_exactly_what_it_says():
    b = plan_budget(TrainSpec(epochs=3), 40, 900, True)
    assert (b.epochs, b.max_steps, b.early_stopping, b.eval_every) == (3.0, -1, False, 0)
    b = plan_budget(TrainSpec(max_steps=7), 40, 900, True)
    assert (b.max_steps, b.early_stopping) == (7, False)
    b = plan_budget(TrainSpec(epochs=3, early_stopping=True, eval_every=5), 40, 900, True)
    assert b.early_stopping and b.eval_every == 5 and b.epochs == 3
    b = plan_budget(TrainSpec(eval_every=9), 40, 900, True)  # auto budget, explicit interval
    assert b.early_stopping and b.eval_every == 9


def test_budget_without_held_out_rows_or_with_no_passes():
    off = plan_budget(TrainSpec(), 40, 900, has_eval=False)
    assert not off.early_stopping and off.eval_every == 0 and "no held-out rows" in off.reason
    with pytest.raises(ValueError, match="needs held-out rows"):
        plan_budget(TrainSpec(early_stopping=True), 40, 900, has_eval=False)
    with pytest.raises(ValueError, match="eval_every=0"):
        plan_budget(TrainSpec(eval_every=0), 40, 900, has_eval=True)
    assert plan_budget(TrainSpec(), 40, None, True).epochs == 1  # no loss-token count: one epoch


def test_recipe_fields_validate_with_one_line_per_field():
    with pytest.raises(RecipeError, match=r"train.epochs: Input should be greater than 0, or input should be 'auto'"):
        build_recipe({"data": {"builtin": "contacts"}}, ["train.epochs=0"])
    r = build_recipe({"data": {"builtin": "contacts"}}, ["train.epochs=auto", "train.lr=3e-4"])
    assert r.train.epochs == "auto" and r.learning_rate() == 3e-4


# --- per-method learning rates --------------------------------------------------------------------------------


def test_lr_auto_is_the_method_default_and_few_parameter_methods_get_much_higher_rates():
    def lr(method: str, *over: str) -> float:
        return build_recipe({"data": {"builtin": "contacts"}, "method": method}, list(over)).learning_rate()

    lora = lr("lora")
    assert lora == METHODS.get("lora").Params.default_lr == 2e-4
    for few in ("ia3", "prompt", "prefix", "ptuning", "bitfit", "lntuning"):
        assert 10 * lora <= lr(few) <= 500 * lora, few
    assert lr("full") < lora
    assert lr("ia3", "train.lr=1e-3") == 1e-3  # explicit wins


# --- gradient checkpointing decided by memory ------------------------------------------------------------------


def test_decide_turns_checkpointing_on_only_when_the_peak_would_not_fit():
    gib = 2**30
    assert not decide(3 * gib, 1 * gib, available=24 * gib).on
    low = decide(3 * gib, 1 * gib, available=2 * gib)
    assert low.on and "exceeds 80% of 2.00 GiB" in low.reason


def test_checkpointing_decision_flips_when_memory_is_set_low(tokenizer, chat_file):
    rows = read_file(str(chat_file), "auto")
    enc, stats = encode_all(tokenizer, rows, 128, "assistant")
    lengths = [len(e.input_ids) for e in enc]
    config = tiny_config(tokenizer)

    def decision(*over: str):
        recipe = build_recipe({"data": {"train": str(chat_file)}, "method": "lora"}, list(over))
        return plan_checkpointing(recipe, config, lengths, stats.loss_tokens, "cpu", autocast=False)

    roomy = decision("train.memory_budget_gb=64")
    assert not roomy.on and roomy.peak_without > roomy.peak_with
    tight_gb = roomy.peak_without * 1.05 / 2**30  # the peak without it fits, but not within the 80% margin
    tight = decision(f"train.memory_budget_gb={tight_gb}")
    assert tight.on and "exceeds" in tight.reason
    assert decision("train.memory_budget_gb=64", "train.gradient_checkpointing=true").on  # explicit wins
    assert not decision("train.memory_budget_gb=0.001", "train.gradient_checkpointing=false").on
    prefix = build_recipe({"data": {"train": str(chat_file)}, "method": "prefix"}, ["train.memory_budget_gb=0.001"])
    assert not plan_checkpointing(prefix, config, lengths, stats.loss_tokens, "cpu", False).on
    no_rows = plan_checkpointing(build_recipe({"data": {"train": str(chat_file)}}), config, None, None, "cpu", False)
    assert no_rows.on and "no memory estimate" in no_rows.reason


# --- early stopping restores the best weights -----------------------------------------------------------------


def _random_label_rows(n: int, seed: int) -> list[dict]:
    """Words mapped to random words: nothing to generalise, so held-out loss rises once training memorises."""
    rng = random.Random(seed)
    vocab = ["amber", "birch", "cloud", "delta", "ember", "frost", "grove", "heron", "iris", "jade", "kelp", "lumen"]
    return [{"messages": [{"role": "user", "content": f"Code {rng.randrange(10**6)}?"},
                          {"role": "assistant", "content": rng.choice(vocab)}]} for _ in range(n)]


def _heldout_loss(model, tokenizer, path) -> float:
    enc, _ = encode_all(tokenizer, read_file(str(path), "auto"), 128, "assistant")
    total = n = 0.0
    model.eval()
    with torch.no_grad():
        for e in enc:
            ids, labels = torch.tensor([e.input_ids]), torch.tensor([e.labels])
            logits = model(input_ids=ids).logits[:, :-1].float()
            target = labels[:, 1:]
            mask = target != -100
            total += torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum").item()
            n += mask.sum().item()
    return total / n


def test_early_stopping_stops_an_overfitting_run_and_keeps_the_best_weights(tiny_model_dir, tmp_path, tokenizer):
    train_file = write_jsonl(tmp_path / "train.jsonl", _random_label_rows(16, 1))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", _random_label_rows(8, 2))
    recipe = tiny_recipe(tiny_model_dir, tmp_path, data={"train": str(train_file), "eval": str(eval_file),
                                                          "max_length": 128},
                         method={"name": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
                         train={"max_steps": -1, "batch_size": 4, "lr": 2e-2, "scheduler": "constant",
                                "warmup": 0, "eval_every": 2, "patience": 3, "log_every": 1},
                         eval={"max_examples": 2, "batch_size": 2, "decode": {"max_new_tokens": 2}})
    del recipe["data"]["builtin"], recipe["data"]["max_train"]
    s = train(build_recipe(recipe), progress=False)
    rows = s.run.read_metrics()
    kept = s.results["plan"]["kept"]
    curve = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r and "kept_step" not in r]
    during = curve[:-1]  # the last line is the final evaluation of the kept weights
    best_step, best = min(during, key=lambda c: c[1])
    assert kept["stopped_early"] and kept["step"] == best_step < kept["last_step"]
    assert during[-1][1] > best  # the run overfitted past the kept step
    assert any(r.get("kept_step") == best_step for r in rows)
    assert curve[-1][1] == pytest.approx(best, rel=1e-4)  # what the trainer holds after training is the best
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    saved = PeftModel.from_pretrained(base, s.run.adapter_dir)  # and so is what the run dir saved
    assert _heldout_loss(saved, tokenizer, eval_file) == pytest.approx(best, rel=1e-3)
    plan = json.loads((s.run.path / "plan.json").read_text())
    assert plan["budget"]["early_stopping"] and plan["kept"]["step"] == best_step
    assert "kept step" in (s.run.path / "report.md").read_text()


# --- the advisor writes these defaults ------------------------------------------------------------------------


def test_advised_sft_recipes_leave_budget_rate_and_checkpointing_on_auto(tmp_path, tiny_model_dir, chat_file):
    for goal in ("task", "style", "chat"):
        stem, _purpose, data = plan(goal, str(tiny_model_dir), str(chat_file), "lora", {}, 4, 128,
                                    str(tmp_path / "index"))[0]
        r = build_recipe(data)
        assert "epochs" not in data["train"] and "lr" not in data["train"], stem
        assert (r.train.epochs, r.train.lr, r.train.gradient_checkpointing) == ("auto", "auto", "auto")


def test_classifier_like_labels_get_lora_where_it_fits_and_freeze_otherwise():
    facts = Facts("task", 300, frozenset({"lora", "freeze"}), answer_p50=1, distinct_answers=5)
    leaf = walk(facts).leaf
    assert leaf == "E"
    assert _choose(leaf, [Row("lora", None, True), Row("freeze", None, True)]) == "lora"
    assert _choose(leaf, [Row("lora", None, False), Row("freeze", None, True)]) == "freeze"


def test_eval_loss_curve_drops_the_final_pass_over_the_kept_weights_and_the_arena_names_the_kept_step():
    metrics = [{"step": 2, "loss": 1.0}, {"step": 2, "eval_loss": 0.9}, {"step": 4, "eval_loss": 0.8},
               {"step": 6, "eval_loss": 0.85}, {"step": 6, "eval_loss": 0.8}]
    assert eval_loss_curve(metrics) == [[2, 0.9], [4, 0.8], [6, 0.85]]
    assert eval_loss_curve(metrics[:3]) == [[2, 0.9], [4, 0.8]]
    assert kept_step_text({"kept_step": 4, "planned_steps": 40, "stopped_early": True}) == "4 of 40 (early stop)"
    assert kept_step_text({"kept_step": 50, "planned_steps": 50}) == "50 of 50"
    assert kept_step_text({}) == "-"
