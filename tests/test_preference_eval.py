"""Every preference objective ends its run with eval.json and report.md holding held-out preference accuracy and
margin; standard-form (plain string) pairs are scored without generation; whatever would fail at evaluation
fails before the run directory exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftatlas.data.preference import UnpairedExample, pair_up
from ftatlas.data.records import Message
from ftatlas.evaluate.runner import evaluate_rows
from ftatlas.pipeline import train
from ftatlas.recipe import EvalSpec, build_recipe
from tests.conftest import tiny_recipe, write_jsonl

WORDS = ["apple", "river", "stone", "cloud", "maple", "tiger", "pearl", "ember", "frost", "lemon"]
TRAIN = {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "log_every": 1, "precision": "fp32"}
EVAL = {"max_examples": 4, "batch_size": 4, "decode": {"max_new_tokens": 4}}


def text_pairs(path: Path, words: list[str]) -> Path:
    """TRL's standard form: plain string prompt, chosen, rejected (no chat template)."""
    return write_jsonl(path, [{"prompt": f"Shout {w}:", "chosen": f" {w.upper()}", "rejected": f" {w}"}
                              for w in words])


def recipe(tiny_model_dir: Path, tmp_path: Path, objective: str, **over) -> dict:
    data = {"train": str(text_pairs(tmp_path / "train.jsonl", WORDS[:8])),
            "eval": str(text_pairs(tmp_path / "test.jsonl", WORDS[8:])), "max_length": 64,
            "builtin": None, "max_train": None}
    return tiny_recipe(tiny_model_dir, tmp_path, objective={"name": objective}, data=data,
                       **{"train": TRAIN, "eval": EVAL, **over})


@pytest.mark.parametrize("objective", ["dpo", "orpo", "cpo", "simpo", "kto"])
def test_standard_form_pairs_end_with_preference_eval_and_report(tiny_model_dir, tmp_path, objective, capsys):
    s = train(build_recipe(recipe(tiny_model_dir, tmp_path, objective)), progress=False, eval_before=True)
    assert "data.template=chat" in capsys.readouterr().err  # the model has a chat template the rows skip
    for name in ("eval_before.json", "eval.json"):
        ev = s.run.read_json(name)
        assert list(ev["metrics"]) == ["preference_accuracy", "preference_margin"], ev["metrics"]
        assert ev["n"] == 2 and 0.0 <= ev["metrics"]["preference_accuracy"] <= 1.0
        assert ev["details"]["preference_accuracy"] == {"pairs": 2, "not_pairs": 0}
        ex = ev["examples"][0]
        margin = ex["chosen_logp_per_token"] - ex["rejected_logp_per_token"]
        assert ex["scores"]["preference_accuracy"] == float(margin > 0)
        assert ex["scores"]["preference_margin"] == pytest.approx(margin, abs=1e-3)
        assert "predictions" not in ev  # nothing generated: plain-text pairs have no reference to generate
    report = (s.run.path / "report.md").read_text()
    assert "preference_accuracy" in report and "base (no training)" in report


def test_conversational_pairs_add_generation_metrics(tiny_model_dir, tmp_path):
    r = tiny_recipe(tiny_model_dir, tmp_path, objective={"name": "dpo"}, train=TRAIN, eval=EVAL,
                    data={"builtin": "contacts", "max_length": 128, "max_train": 4})
    ev = train(build_recipe(r), progress=False).run.read_json("eval.json")
    assert list(ev["metrics"]) == ["preference_accuracy", "preference_margin", "json_match", "exact_match"]
    assert len(ev["predictions"]) == ev["n"] == 4


def test_template_chat_turns_standard_prompts_into_user_messages(tiny_model_dir, tmp_path, capsys):
    r = recipe(tiny_model_dir, tmp_path, "dpo")
    r["data"]["template"] = "chat"
    s = train(build_recipe(r), progress=False)
    assert "data.template=chat" not in capsys.readouterr().err
    assert s.splits.eval[0].prompt == [Message("user", "Shout frost:")] and not s.splits.eval[0].is_text
    ev = s.run.read_json("eval.json")  # now the rows give a prompt and a reference: generation is scored too
    assert list(ev["metrics"]) == ["preference_accuracy", "preference_margin", "exact_match", "token_f1"]


def test_unscorable_metric_fails_before_the_run_dir_exists(tiny_model_dir, tmp_path):
    r = recipe(tiny_model_dir, tmp_path, "dpo", eval={**EVAL, "metrics": ["exact_match"]})
    with pytest.raises(ValueError, match=r"test\.jsonl:1: a plain-text row has no prompt/answer.*exact_match"):
        train(build_recipe(r), progress=False)
    assert not (tmp_path / "tiny").exists()


def test_pair_metric_on_conversations_fails_before_the_run_dir_exists(tiny_model_dir, tmp_path):
    r = tiny_recipe(tiny_model_dir, tmp_path, eval={**EVAL, "metrics": ["preference_accuracy"]})
    with pytest.raises(ValueError, match="preference_accuracy score chosen/rejected pairs"):
        train(build_recipe(r), progress=False)
    assert not (tmp_path / "tiny").exists()


def test_no_held_out_rows_fails_before_the_run_dir_exists(tiny_model_dir, tmp_path):
    r = recipe(tiny_model_dir, tmp_path, "dpo")
    del r["data"]["eval"]
    r["data"]["eval_split"] = 0.0
    with pytest.raises(ValueError, match="no held-out rows"):
        train(build_recipe(r), progress=False)
    assert not (tmp_path / "tiny").exists()


def test_swapping_chosen_and_rejected_flips_accuracy_and_margin(tiny_model, tokenizer, tmp_path):
    from ftatlas.data.preference import read_preference_file

    pairs = read_preference_file(text_pairs(tmp_path / "p.jsonl", WORDS))
    spec = EvalSpec(batch_size=4)
    names = ["preference_accuracy", "preference_margin"]
    ev = evaluate_rows(tiny_model, tokenizer, pairs, spec, names, progress=False)
    for p in pairs:
        p.chosen, p.rejected = p.rejected, p.chosen
    flipped = evaluate_rows(tiny_model, tokenizer, pairs, spec, names, progress=False)
    assert flipped["metrics"]["preference_margin"] == pytest.approx(-ev["metrics"]["preference_margin"], abs=1e-5)
    assert flipped["metrics"]["preference_accuracy"] == pytest.approx(1 - ev["metrics"]["preference_accuracy"])
    assert ev["ci95"]["preference_accuracy"][0] <= ev["metrics"]["preference_accuracy"]


def test_pair_up_regroups_kto_examples_and_keeps_lone_desirable_ones():
    q = [Message("user", "q")]
    rows = [UnpairedExample(q, "good", True, source="f", line=1), UnpairedExample(q, "bad", False, line=2),
            UnpairedExample([Message("user", "other")], "fine", True, line=3)]
    got = pair_up(rows)
    assert (got[0].chosen, got[0].rejected, got[0].line) == ("good", "bad", 1)
    assert got[1] is rows[2]
