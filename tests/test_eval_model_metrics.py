"""Model metrics against values computed here independently: json_schema, multiple-choice accuracy by
log-likelihood, perplexity, reward-model score; their wiring into evaluate_rows / evaluate_target / eval.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_config, write_jsonl
from transformers import LlamaForSequenceClassification

from ftatlas.data.errors import DataError
from ftatlas.data.readers import read_file
from ftatlas.evaluate.choices import read_choices
from ftatlas.evaluate.json_schema import json_schema, load_schema
from ftatlas.evaluate.model_metrics import EvalBatch, check_metrics
from ftatlas.evaluate.runner import evaluate_rows
from ftatlas.recipe import DecodeSpec, EvalSpec
from ftatlas.registry import UnknownNameError

SCHEMA = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}

MC_ROWS = [
    {"instruction": "Capital of France?", "output": "Paris", "choices": ["Lyon", "Paris", "Nice"]},
    {"instruction": "What is 2+2?", "output": "four", "choices": ["three", "four", "five", "a fish"], "answer": 1},
    {"instruction": "Colour of the sky?", "output": "blue", "choices": ["blue", "green"]},
    {"instruction": "Opposite of hot?", "output": "cold", "choices": ["warm", "cold"], "answer": "cold"},
    {"instruction": "Largest planet?", "output": "Jupiter", "choices": ["Mars", "Jupiter", "the Moon"]},
]


def _batch(predictions: list[str], **spec) -> EvalBatch:
    n = len(predictions)
    return EvalBatch(None, None, [], [[]] * n, [[]] * n, [""] * n, [""] * n, predictions,
                     EvalSpec(**spec), progress=False)


# --- json_schema ------------------------------------------------------------------------------------------------


def test_json_schema_valid_and_invalid_cases():
    preds = [
        '{"name": "Ada", "age": 36}',  # valid
        'Sure! ```json\n{"age": 1, "name": "B"}\n``` done',  # valid, inside chatter and a fence
        '{"name": "Ada"}',  # missing required age
        '{"name": "Ada", "age": "36"}',  # wrong type
        '{"name": "Ada", "age": -1}',  # below minimum
        "no json here",
        '[{"name": "Ada", "age": 3}]',  # an array, not an object
    ]
    res = json_schema(_batch(preds, metrics=["json_schema"], json_schema=SCHEMA))
    assert res.per == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert res.value() == pytest.approx(2 / 7)
    assert "'age' is a required property" in res.notes[2]["json_schema_error"]
    assert res.notes[3]["json_schema_error"].startswith("age:")
    assert res.notes[5]["json_schema_error"] == "no JSON value in the prediction"


def test_json_schema_from_file_and_its_errors(tmp_path):
    good = tmp_path / "schema.json"
    good.write_text(json.dumps(SCHEMA))
    assert json_schema(_batch(['{"name": "x", "age": 2}'], metrics=["json_schema"], json_schema=str(good))).per == [1.0]
    with pytest.raises(DataError, match=r"missing\.json: field 'eval.json_schema': schema file does not exist"):
        load_schema(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "type": "object",\n  "required": [name]\n}')
    with pytest.raises(DataError, match=r"broken\.json:3: invalid JSON"):
        load_schema(str(broken))
    with pytest.raises(DataError, match=r"field 'properties/age/type': invalid JSON schema"):
        load_schema({"type": "object", "properties": {"age": {"type": "integr"}}})
    with pytest.raises(ValueError, match="metric 'json_schema' needs eval.json_schema"):
        EvalSpec(metrics=["json_schema"])
    with pytest.raises(DataError, match="missing.json"):  # checked before any model loads
        check_metrics(["json_schema"], EvalSpec(metrics=["json_schema"], json_schema=str(tmp_path / "missing.json")))


def test_unknown_metric_lists_both_kinds():
    with pytest.raises(UnknownNameError, match=r"unknown metric 'bleurt'; known: .*exact_match.*mc_accuracy.*"
                                               r"perplexity.*reward_score"):
        check_metrics(["bleurt"], EvalSpec())


# --- multiple choice -------------------------------------------------------------------------------------------


def _by_hand_loglik(model, tok, question: str, choice: str) -> float:
    """Sum of log p(choice tokens | chat-rendered prompt), one unpadded sequence at a time."""
    msgs = [{"role": "user", "content": question}]
    prompt_ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    prompt_ids = tok(prompt_ids, add_special_tokens=False)["input_ids"]
    full = tok.apply_chat_template([*msgs, {"role": "assistant", "content": choice}], tokenize=False)
    ids = tok(full, add_special_tokens=False)["input_ids"]
    assert ids[:len(prompt_ids)] == prompt_ids
    n_choice = len(tok(choice, add_special_tokens=False)["input_ids"])
    assert ids[len(prompt_ids):len(prompt_ids) + n_choice] == tok(choice, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(len(prompt_ids), len(prompt_ids) + n_choice))


def test_mc_accuracy_matches_argmax_of_the_models_own_logits(tiny_model, tokenizer, tmp_path):
    rows = read_file(write_jsonl(tmp_path / "mc.jsonl", MC_ROWS))
    spec = EvalSpec(metrics=["mc_accuracy", "mc_accuracy_norm"], batch_size=3)  # pads mixed lengths
    res = evaluate_rows(tiny_model.eval(), tokenizer, rows, spec, spec.metrics, progress=False)
    golds = [1, 1, 0, 1, 1]
    want, want_norm = [], []
    for row, gold, ex in zip(MC_ROWS, golds, res["examples"], strict=True):
        ll = [_by_hand_loglik(tiny_model, tokenizer, row["instruction"], c) for c in row["choices"]]
        assert ex["choice_loglik"] == pytest.approx(ll, abs=1e-3)
        assert ex["gold"] == gold
        want.append(float(np.argmax(ll) == gold))
        want_norm.append(float(np.argmax([v / len(c.encode()) for v, c in zip(ll, row["choices"], strict=True)])
                               == gold))
        assert ex["prediction"] is None  # nothing generated for log-likelihood metrics
    assert [ex["scores"]["mc_accuracy"] for ex in res["examples"]] == want
    assert res["metrics"]["mc_accuracy"] == pytest.approx(sum(want) / len(want))
    assert res["metrics"]["mc_accuracy_norm"] == pytest.approx(sum(want_norm) / len(want_norm))
    lo, hi = res["ci95"]["mc_accuracy"]
    assert lo <= res["metrics"]["mc_accuracy"] <= hi


@pytest.mark.parametrize(("row", "field", "message"), [
    ({"instruction": "q", "output": "a"}, "choices", "missing"),
    ({"instruction": "q", "output": "a", "choices": "a,b"}, "choices", "at least 2 strings"),
    ({"instruction": "q", "output": "a", "choices": ["a", 3]}, "choices[1]", "non-empty string"),
    ({"instruction": "q", "output": "a", "choices": ["a", " a "]}, "choices", "same text"),
    ({"instruction": "q", "output": "a", "choices": ["a", "b"], "answer": 2}, "answer", "out of range 0..1"),
    ({"instruction": "q", "output": "a", "choices": ["a", "b"], "answer": "c"}, "answer", "expected an index"),
    ({"instruction": "q", "output": "z", "choices": ["a", "b"]}, "choices", "reference answer 'z' is not one"),
])
def test_bad_choice_rows_name_file_line_and_field(tmp_path, row, field, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [MC_ROWS[0], row])
    conv = read_file(path)[1]
    with pytest.raises(DataError) as info:
        read_choices(conv, conv.prompt_and_reference()[1])
    assert str(info.value).startswith(f"{path}:2: field '{field}': ")
    assert message in str(info.value)


# --- perplexity ------------------------------------------------------------------------------------------------


def test_perplexity_is_exp_of_mean_answer_nll(tiny_model, tokenizer, chat_file):
    rows = read_file(chat_file)[:6]
    spec = EvalSpec(metrics=["perplexity"], batch_size=4)
    res = evaluate_rows(tiny_model.eval(), tokenizer, rows, spec, ["perplexity"], progress=False)
    total_nll, total_tokens = 0.0, 0
    for row in rows:
        msgs = [{"role": m.role, "content": m.content} for m in row.messages]
        prompt = tokenizer.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False)
        n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([tokenizer(tokenizer.apply_chat_template(msgs, tokenize=False),
                                      add_special_tokens=False)["input_ids"]])
        labels = ids.clone()
        labels[0, :n_prompt] = -100
        with torch.no_grad():
            loss = float(tiny_model(input_ids=ids, labels=labels).loss)  # mean over the answer tokens
        n = ids.shape[1] - n_prompt
        total_nll, total_tokens = total_nll + loss * n, total_tokens + n
    assert res["metrics"]["perplexity"] == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-4)
    assert res["details"]["perplexity"]["tokens"] == total_tokens
    assert res["lower_is_better"] == ["perplexity"]
    lo, hi = res["ci95"]["perplexity"]
    assert lo <= res["metrics"]["perplexity"] <= hi


def test_perplexity_on_plain_text_rows_and_text_rows_refuse_other_metrics(tiny_model, tokenizer, tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("The river runs north.\n\nStones sink; clouds do not.\n")
    rows = read_file(txt)
    res = evaluate_rows(tiny_model.eval(), tokenizer, rows, EvalSpec(), ["perplexity"], progress=False)
    nll, count = 0.0, 0
    for row in rows:
        ids = torch.tensor([tokenizer(row.text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            nll += float(tiny_model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    assert res["metrics"]["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    with pytest.raises(ValueError, match=r"notes\.txt:1: a plain-text row .* exact_match"):
        evaluate_rows(tiny_model, tokenizer, rows, EvalSpec(), ["perplexity", "exact_match"], progress=False)


# --- reward model ----------------------------------------------------------------------------------------------


def test_reward_score_matches_load_reward_scorer(tiny_model, tokenizer, chat_file, tmp_path):
    from ftatlas.objectives.reward import load_reward_scorer

    rm_dir = tmp_path / "rm"
    torch.manual_seed(1)
    LlamaForSequenceClassification(tiny_config(tokenizer, num_labels=1)).save_pretrained(rm_dir)
    tokenizer.save_pretrained(rm_dir)
    rows = read_file(chat_file)[:4]
    spec = EvalSpec(metrics=["reward_score", "exact_match"], batch_size=2, reward_model=str(rm_dir),
                    decode=DecodeSpec(max_new_tokens=6))
    res = evaluate_rows(tiny_model.eval(), tokenizer, rows, spec, spec.metrics, progress=False)
    preds = [ex["prediction"] for ex in res["examples"]]
    prompts = [[{"role": "user", "content": r.messages[0].content}] for r in rows]
    want = load_reward_scorer(rm_dir, device="cpu")(prompts, preds)
    assert [ex["scores"]["reward_score"] for ex in res["examples"]] == pytest.approx(want, abs=1e-4)
    assert res["metrics"]["reward_score"] == pytest.approx(sum(want) / len(want), abs=1e-4)
    assert res["scales"]["reward_score"].startswith("reward model output")
    with pytest.raises(ValueError, match="eval.reward_model: .*nowhere does not exist"):
        check_metrics(["reward_score"], EvalSpec(reward_model=str(tmp_path / "nowhere")))


# --- evaluate_target / eval.json -------------------------------------------------------------------------------


def test_evaluate_target_writes_model_metrics_into_eval_json(tiny_model_dir, tmp_path):
    from ftatlas.evaluate.target import evaluate_target

    data = write_jsonl(tmp_path / "mc.jsonl", [{**r, "output": json.dumps({"name": r["output"], "age": 1})}
                                              | {"answer": 0} for r in MC_ROWS[:3]])
    result, out = evaluate_target(str(tiny_model_dir), str(data), ["mc_accuracy", "perplexity", "json_schema"],
                                  DecodeSpec(max_new_tokens=4), out=tmp_path / "eval.json", progress=False,
                                  eval_options={"json_schema": SCHEMA})
    saved = json.loads(out.read_text())
    assert set(saved["metrics"]) == set(saved["ci95"]) == {"mc_accuracy", "perplexity", "json_schema"}
    assert saved["lower_is_better"] == ["perplexity"]
    assert saved["metrics"]["json_schema"] == 0.0  # a random model writes no valid JSON
    assert saved["n"] == 3 and len(saved["examples"]) == 3
    with pytest.raises(ValueError, match="needs eval.reward_model"):  # before the model loads
        evaluate_target(str(tiny_model_dir), str(data), ["reward_score"], DecodeSpec(), progress=False)


def test_recipe_eval_block_drives_train_and_re_eval(tiny_model_dir, tmp_path):
    """The arena and `ftatlas train` evaluate through the recipe's eval: block; `ftatlas eval RUN` reuses it."""
    from conftest import tiny_recipe

    from ftatlas.evaluate.target import evaluate_target
    from ftatlas.pipeline import train
    from ftatlas.resolve import build_recipe

    schema = tmp_path / "contact.schema.json"
    schema.write_text(json.dumps(SCHEMA))
    recipe = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"max_steps": 1},
                                      eval={"metrics": ["json_match", "json_schema", "perplexity"],
                                            "json_schema": str(schema)}))
    session = train(recipe, progress=False)
    saved = json.loads((session.run.path / "eval.json").read_text())
    assert list(saved["metrics"]) == ["json_match", "json_schema", "perplexity"]
    assert set(saved["ci95"]) == {"json_match", "json_schema", "perplexity"}
    assert saved["metrics"]["perplexity"] > 1 and saved["lower_is_better"] == ["perplexity"]
    result, _ = evaluate_target(str(session.run.path), None, ["json_schema"], DecodeSpec(max_new_tokens=4),
                                max_examples=2, out=tmp_path / "again.json", progress=False)
    assert result["n"] == 2 and "json_schema" in result["ci95"]  # the run's own schema, no option needed


def test_train_refuses_bad_eval_config_before_training(tiny_model_dir, tmp_path):
    from conftest import tiny_recipe

    from ftatlas.pipeline import train
    from ftatlas.resolve import build_recipe

    recipe = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, eval={"metrics": ["json_schema"],
                                                                      "json_schema": str(tmp_path / "gone.json")}))
    with pytest.raises(DataError, match="gone.json: field 'eval.json_schema': schema file does not exist"):
        train(recipe, progress=False)
    assert not (tmp_path / "tiny").exists()  # no run directory, nothing trained


def test_relative_schema_and_reward_paths_are_kept_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "rm").mkdir()
    spec = EvalSpec(json_schema="s.json", reward_model="rm")
    assert spec.json_schema == str(tmp_path / "s.json") and spec.reward_model == str(tmp_path / "rm")
    assert EvalSpec(json_schema="later.json").json_schema == "later.json"  # not there: left for a clear error


def test_train_table_shows_scaled_and_unscored_metrics():
    from types import SimpleNamespace

    from ftatlas.run_report import comparison_rows

    ev = {"metrics": {"exact_match": 0.25, "perplexity": 21.3527, "judge_score": None}, "peak_memory_bytes": 2**30,
          "scales": {"perplexity": "perplexity (>= 1)", "judge_score": "1-10"}, "prompt_tokens_per_request": 25.0}
    context = SimpleNamespace(name="zero_shot", params=lambda: {})
    session = SimpleNamespace(results={"after": ev}, metrics=list(ev["metrics"]), recipe=SimpleNamespace(
        context=context, method=SimpleNamespace(name="none"), objective=SimpleNamespace(name="sft")))
    row = comparison_rows(session)[0]
    assert (row["exact_match"], row["perplexity"], row["judge_score"]) == ("25.0", "21.35", "-")
