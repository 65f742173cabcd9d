"""Context modes on their own: zero-shot framing, few-shot selection and token budget, RAG prompt assembly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ftatlas.context import build_context
from ftatlas.context.retrieval.ingest import ingest
from ftatlas.data.records import Conversation, Message

QUESTIONS = ["What colour is the sky?", "What colour is grass?", "How many legs does a spider have?",
             "How many legs does a dog have?", "What is the capital of France?", "What is the capital of Peru?"]
ANSWERS = ["blue", "green", "eight", "four", "Paris", "Lima"]


def rows():
    return [Conversation([Message("user", q), Message("assistant", a)], source="t", line=i)
            for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS, strict=True), 1)]


def user(q: str) -> list[Message]:
    return [Message("user", q)]


def test_zero_shot_applies_system_and_template_and_keeps_row_system(tokenizer):
    ctx = build_context("zero_shot", {"system": "Be brief.", "template": "Q: {input}\nA (one word):"}, tokenizer)
    out = ctx.augment([user("Why?"), [Message("system", "You are a pirate."), Message("user", "Why?")]])
    assert out[0].messages == [Message("system", "Be brief."), Message("user", "Q: Why?\nA (one word):")]
    assert out[1].messages[0] == Message("system", "Be brief.\n\nYou are a pirate.")
    with pytest.raises(ValidationError, match=r"\{input\}"):
        build_context("zero_shot", {"template": "no slot"}, tokenizer)


def test_few_shot_random_is_seeded_and_puts_examples_before_the_query(tokenizer):
    ctx = build_context("few_shot", {"k": 2, "seed": 3}, tokenizer, rows())
    a, b = ctx.augment([user("Is it raining?"), user("Is it sunny?")])
    assert a.info["examples"] == b.info["examples"] and len(a.info["examples"]) == 2
    assert [m.role for m in a.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert a.messages[-1] == Message("user", "Is it raining?")
    other = build_context("few_shot", {"k": 2, "seed": 4}, tokenizer, rows()).augment([user("Is it raining?")])[0]
    assert sorted(other.info["examples"]) != sorted(a.info["examples"]) or other.messages != a.messages


def test_few_shot_nearest_picks_similar_questions_most_similar_last(tokenizer):
    ctx = build_context("few_shot", {"k": 2, "selection": "nearest"}, tokenizer, rows())
    out = ctx.augment([user("How many legs does a cat have?")])[0]
    picked = [QUESTIONS[i] for i in out.info["examples"]]
    assert set(picked) == {"How many legs does a spider have?", "How many legs does a dog have?"}
    assert out.messages[-3].content == picked[-1]  # the nearest example sits right before the query


def test_few_shot_never_uses_the_query_itself_as_an_example(tokenizer):
    ctx = build_context("few_shot", {"k": 5, "selection": "nearest"}, tokenizer, rows())
    out = ctx.augment([user("What colour is grass?")])[0]
    assert 1 not in out.info["examples"] and len(out.info["examples"]) == 5


def test_few_shot_budget_drops_examples_not_the_query(tokenizer):
    full = build_context("few_shot", {"k": 4, "selection": "nearest"}, tokenizer, rows())
    q = [user("What is the capital of Chile? " + "Please answer. " * 3)]
    out = full.augment(q)[0]
    need = full.count_tokens(out.messages)
    one = build_context("few_shot", {"k": 4, "selection": "nearest", "max_prompt_tokens": need - 1},
                        tokenizer, rows()).augment(q)[0]
    assert len(one.info["examples"]) == 3 and one.info["dropped_for_budget"] == 1
    assert one.info["examples"] == out.info["examples"][1:]  # the least similar went first
    none = build_context("few_shot", {"k": 4, "max_prompt_tokens": 16}, tokenizer, rows()).augment(q)[0]
    assert none.info["examples"] == [] and none.messages == q[0]  # over budget even alone: query kept whole


def test_few_shot_without_examples_says_what_to_do(tokenizer):
    with pytest.raises(ValueError, match="context.examples=FILE"):
        build_context("few_shot", {}, tokenizer, [])


def test_rag_prompt_numbers_passages_with_sources_and_respects_budget(tokenizer, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fleet.md").write_text("The Albatross is a cargo ship built in Quorva.")
    (docs / "menu.md").write_text("The lemon cake bakes for forty minutes.")
    ingest([str(docs)], tmp_path / "idx", progress=False)
    ctx = build_context("rag", {"index": str(tmp_path / "idx"), "k": 2, "template": "{input} (one word)"}, tokenizer)
    out = ctx.augment([user("Where was the Albatross built?")])[0]
    text = out.messages[-1].content
    assert text.index("[1] (fleet.md#0) The Albatross") < text.index("[2] (menu.md#0)")
    assert text.endswith("Question: Where was the Albatross built? (one word)")
    assert out.info["passages"] == ["fleet.md#0", "menu.md#0"]
    tight = build_context("rag", {"index": str(tmp_path / "idx"), "k": 2, "max_context_tokens": 30}, tokenizer)
    t = tight.augment([user("Where was the Albatross built?")])[0]
    assert t.info["passages"] == ["fleet.md#0"] and t.info["dropped_for_budget"] == 1
