"""Duplicates, over-long rows and train/eval overlap in data inspect / validate, train and the arena."""

from __future__ import annotations

from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.data import checks
from ftatlas.data.decontam import split_overlap
from ftatlas.data.records import Conversation, Message
from ftatlas.data.splits import load_builtin
from tests.conftest import write_jsonl

runner = CliRunner()
TEMPLATE = "Extract the contact record from this message as JSON and answer with nothing else at all."


def chat(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def conv(user: str, answer: str) -> Conversation:
    return Conversation([Message("user", user), Message("assistant", answer)], source="train.jsonl", line=1)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_templated_rows_are_not_overlap_but_a_copied_row_is():
    train = load_builtin("contacts", "train")
    held = load_builtin("contacts", "eval")
    assert split_overlap(train, held) == []  # one template, different people: no leak
    # without the train-boilerplate rule, the any-one-13-gram rule flags rows sharing template + one name or age
    assert len(split_overlap(train, held, train_boilerplate=len(train))) > 10
    assert split_overlap(train, held, coverage=0.5) == []  # the share rule stays an option
    leaked = train[:5] + held[:2]
    assert [o.row for o in split_overlap(leaked, held)] == [5, 6]
    assert len(split_overlap(train + held, held)) == len(held)  # every copied row, among 400 templated ones


def test_a_shared_system_prompt_is_boilerplate_but_one_shared_13_gram_is_a_leak():
    system = "You are a careful assistant for the city archive and you always answer in one short sentence."
    train = [conv(f"{system} Question {i}: where is box {i}?", f"Shelf {i}.") for i in range(30)]
    held = [conv(f"{system} Which shelf holds the ledger?", "The ledger of the old harbour master is on shelf nine "
                                                            "next to the maps of the northern quarter.")]
    assert split_overlap(train, held) == []  # the system prompt is in all 30 training rows: ignored
    assert len(split_overlap(train, held, train_boilerplate=100)) == 30  # counted as a leak, it flags them all
    # one shared 13-gram of the answer is enough (the share rule would need half of the row's 13-grams)
    quote = conv("Tell me about the archive.", "I read that the old harbour master is on shelf nine next to the "
                                               "maps of the northern quarter, somewhere.")
    assert [o.row for o in split_overlap([*train, quote], held)] == [30]
    assert split_overlap([*train, quote], held, coverage=0.5) == []


def test_an_eval_question_repeated_with_many_answers_is_not_boilerplate():
    q = "Which river runs through the old capital of the northern province and where does it meet the sea?"
    train = [conv(f"Describe item {i} in the archive catalogue.", f"Item {i} is a box.") for i in range(20)]
    train += [conv(q, f"Answer number {i}.") for i in range(15)]  # e.g. rejection-sampled from the eval prompt
    held = [conv(q, "The Vell, at Harrowmouth.")]
    assert len(split_overlap(train, held)) == 15
    # the same when the eval set's own instruction is boilerplate there (dropped on the eval side)
    lead = "Answer the geography question below with the name of the river and the town at its mouth."
    held = [conv(f"{lead} {q}", "The Vell, at Harrowmouth.")]
    held += [conv(f"{lead} Which river flows past the mill number {i} of the valley?", f"River {i}.")
             for i in range(30)]
    train = train[:20] + [conv(f"{lead} {q}", f"Answer number {i}.") for i in range(15)]
    assert [o.row for o in split_overlap(train, held)] == list(range(20, 35))


def test_a_leaked_question_with_another_answer_still_counts():
    held = load_builtin("contacts", "eval")[:1]
    prompt, _ = held[0].prompt_and_reference()
    row = Conversation([*prompt, Message("assistant", "a different answer")], source="t", line=1)
    [found] = split_overlap([row], held)
    assert found.eval_rows == ["builtin:contacts/eval:1"]


def test_validate_reports_duplicates_and_overlap(tmp_path):
    a = [chat(f"{TEMPLATE} Person {i} lives in town {i}.", f"name {i}") for i in range(5)]
    train = write_jsonl(tmp_path / "train.jsonl", [*a, a[1], chat("Copy of eval question here please", "yes")])
    ev = write_jsonl(tmp_path / "eval.jsonl", [chat("Copy of eval question here please", "yes")])
    res = invoke("data", "validate", train, "--eval", ev)
    assert res.exit_code == 0, res.output
    assert "7 rows OK" in res.output
    assert "duplicates: 1 rows" in res.output and "train.jsonl:2 repeated at" in res.output
    assert "train/eval overlap: 1 of 7" in res.output and "train.jsonl:7 <- " in res.output


def test_inspect_names_long_rows(tmp_path, tiny_model_dir):
    rows = [chat("hi", "short"), chat("long " * 300, "x"), chat("hi", "short")]
    f = write_jsonl(tmp_path / "d.jsonl", rows)
    res = invoke("data", "inspect", f, "--model", tiny_model_dir, "--max-length", "64")
    assert res.exit_code == 0, res.output
    assert "rows over max_length=64 tokens (truncated in training): 1" in res.output
    assert "d.jsonl:2: " in res.output and "duplicates: 1 rows" in res.output


def test_long_rows_lists_at_most_a_few_and_counts_all():
    rows = load_builtin("contacts", "train")[:9]
    f = checks.long_rows(rows, [100] * 9, 10)
    assert f.count == 9 and f.lines[-1] == "  ... and 4 more"


def _leaky_files(tmp_path):
    held = load_builtin("contacts", "eval")[:8]
    train = load_builtin("contacts", "train")[:16]
    ev = write_jsonl(tmp_path / "eval.jsonl", [r.to_json() for r in held])
    clean = write_jsonl(tmp_path / "clean.jsonl", [r.to_json() for r in train])
    leaky = write_jsonl(tmp_path / "leaky.jsonl", [r.to_json() for r in train[:12] + held[:4]])
    return ev, clean, leaky


def test_train_warns_on_overlapping_splits_and_records_it(tiny_model_dir, tmp_path):
    import json

    import yaml

    from tests.conftest import tiny_recipe

    ev, _clean, leaky = _leaky_files(tmp_path)
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "runs", data={"train": str(leaky), "eval": str(ev),
                                                                    "max_length": 128},
                         train={"max_steps": 1}, eval={"max_examples": 2})
    recipe["data"].pop("builtin")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = invoke("train", tmp_path / "r.yaml")
    assert res.exit_code == 0, res.output
    assert "warning train/held-out overlap: 4 of 16" in res.output and "[bold" not in res.output  # markup rendered
    checks_file = tmp_path / "runs" / "tiny" / "data_checks.json"
    assert json.loads(checks_file.read_text())["train_eval_overlap"] == 4


def test_arena_gives_no_verdict_on_overlapping_splits(tiny_model_dir, tmp_path):
    import yaml

    from ftatlas.arena import load_arena, run_arena

    ev, clean, leaky = _leaky_files(tmp_path)
    spec = {"name": "leak", "model": {"name": str(tiny_model_dir)},
            "data": {"train": str(clean), "eval": str(ev), "max_length": 128},
            "eval": {"max_examples": 2, "batch_size": 2, "decode": {"max_new_tokens": 4}},
            "output": {"dir": str(tmp_path / "arena")},
            "cells": [{"name": "clean", "method": "none"},
                      {"name": "leaky", "method": "none", "data": {"train": str(leaky)}}]}
    path = tmp_path / "arena.yaml"
    path.write_text(yaml.safe_dump(spec))
    root, rows = run_arena(load_arena(path), log=lambda m: None)
    by = {r["cell"]: r for r in rows}
    assert by["leaky"]["train_eval_overlap"] == 4 and by["clean"]["train_eval_overlap"] == 0
    table = (root / "table.md").read_text()
    assert "no verdict: 4 training rows overlap" in table
    assert "best" in table.split("| clean |")[1].split("\n")[0]  # the clean cell is still ranked
    path.write_text(yaml.safe_dump({**spec, "allow_overlap": True}))
    root, rows = run_arena(load_arena(path), log=lambda m: None)
    assert "no verdict" not in (root / "table.md").read_text()
