"""train -> save -> reload with plain transformers/peft -> generate, and the run-directory contract."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from ftatlas.chat import ChatSession
from ftatlas.evaluate.target import evaluate_target
from ftatlas.pipeline import train
from ftatlas.recipe import DecodeSpec
from ftatlas.resolve import build_recipe
from ftatlas.runs import RunDir, RunDirError
from tests.conftest import tiny_recipe
from tests.test_method_matrix import method_run

IDS = torch.tensor([[1, 20, 300, 4000, 5, 60, 700, 8]])


def logits(model):
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


def run_recipe(tiny_model_dir, tmp_path, **over):
    return train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, **over)), progress=False)


def test_lora_run_directory_contract_and_plain_peft_reload(tiny_model_dir, tmp_path):
    s = run_recipe(tiny_model_dir, tmp_path, train={"max_steps": 6})
    run = s.run
    assert (run.path / "recipe.yaml").is_file() and (run.path / "report.md").is_file()
    assert (run.adapter_dir / "adapter_config.json").is_file() and not run.model_dir.exists()
    rows = run.read_metrics()
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["tokens_per_s"] > 0 and r["lr"] is not None for r in train_rows)
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]  # a few steps lower the loss
    assert any("eval_loss" in r for r in rows)
    ev = json.loads((run.path / "eval.json").read_text())
    assert ev["n"] == 4 and set(ev["metrics"]) == {"json_match", "exact_match"}
    assert {"prompt", "reference", "prediction"} <= set(ev["examples"][0])
    # plain peft, no ftatlas: same logits as the trained model
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(base, run.adapter_dir)
    torch.testing.assert_close(logits(reloaded), logits(s.results["fit"].model))


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_full_and_freeze_save_a_plain_model(tiny_model_dir, shared_run, method):
    s = method_run(shared_run, method)  # the method matrix's end-to-end run (freeze: top_n 1)
    assert s.run.model_dir.is_dir() and not s.run.adapter_dir.exists()
    reloaded = AutoModelForCausalLM.from_pretrained(s.run.model_dir)
    torch.testing.assert_close(logits(reloaded), logits(s.results["fit"].model))
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not torch.allclose(logits(before), logits(reloaded))  # training changed the weights


def test_freeze_changes_only_the_chosen_block(tiny_model_dir, tmp_path):
    s = run_recipe(tiny_model_dir, tmp_path, method={"name": "freeze", "top_n": 1, "norm": False},
                   train={"max_steps": 2})
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(s.run.model_dir).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed)


def test_eval_and_chat_on_a_finished_run(shared_run, chat_file):
    s = method_run(shared_run, "lora")
    result, path = evaluate_target(str(s.run.path), str(chat_file), ["exact_match", "token_f1"],
                                   DecodeSpec(max_new_tokens=4), max_examples=3, progress=False)
    assert path == s.run.path / "eval-chat.json" and result["n"] == 3
    assert set(result["metrics"]) == {"exact_match", "token_f1"}
    chat = ChatSession.open(str(s.run.path), DecodeSpec(max_new_tokens=4), system="Be brief.")
    answer = chat.reply("hello")
    assert isinstance(answer, str)
    assert [m.role for m in chat.history] == ["system", "user", "assistant"]


def test_eval_of_a_bare_model_needs_data(tiny_model_dir):
    with pytest.raises(ValueError, match="--data"):
        evaluate_target(str(tiny_model_dir), None, None, DecodeSpec(), progress=False)


def test_existing_run_dir_is_not_clobbered(tiny_model_dir, shared_run):
    run = method_run(shared_run, "lora").run.path
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with pytest.raises(RunDirError, match="overwrite"):
        run_recipe(tiny_model_dir, run.parent, train={"max_steps": 1})  # the same output dir and name
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_resume_from_checkpoint_continues_the_step_count(tiny_model_dir, tmp_path):
    s = run_recipe(tiny_model_dir, tmp_path, train={"max_steps": 4, "save_every": 2})
    assert (s.run.checkpoints_dir / "checkpoint-4").is_dir()
    recipe = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"max_steps": 6, "save_every": 2},
                                      output={"overwrite": True}))
    s2 = train(recipe, progress=False, resume=True)
    steps = [r["step"] for r in RunDir(s2.run.path).read_metrics() if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 5-6 continue the first run's 1-4


def test_packed_filler_is_not_counted_as_tokens_seen(tiny_model_dir, tmp_path):
    """One epoch (32 rows, batch 4, rows rounded up to 64 tokens): tokens seen = the rows' own tokens."""
    s = run_recipe(tiny_model_dir, tmp_path, train={"max_steps": -1, "epochs": 1, "batch_size": 4,
                                                    "pad_multiple": 64}, eval={"max_examples": 1})
    fit = s.results["fit"]
    assert fit.tokens == fit.data_stats["train"]["tokens"] and fit.tokens % 64 != 0
