"""Conformance matrix over the context registry: every context, present and future, builds from its params,
augments held-out prompts (keeping the question and the system prompt), and its prompt-token cost shows in the
evaluation it runs under."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftatlas.context import CONTEXTS, build_context
from ftatlas.context.base import augment_conversations, query_of
from ftatlas.context.retrieval.ingest import ingest
from ftatlas.data.builtin import contacts
from ftatlas.evaluate.runner import evaluate_rows
from ftatlas.recipe import DecodeSpec, EvalSpec

SYSTEM = "Reply with JSON only."


def rag_index(tmp_path: Path) -> dict:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "people.md").write_text("Ana Silva is 34 and lives in Lisbon.\n\nBruno Okafor is 51 and lives in Oslo.")
    ingest([str(docs)], tmp_path / "idx", progress=False)
    return {"index": str(tmp_path / "idx"), "k": 1}


# The material a context needs beyond its defaults; a new context that needs some adds a line here.
MATERIAL = {"few_shot": lambda tmp_path: {"k": 2}, "rag": rag_index}


@pytest.mark.parametrize("name", CONTEXTS.names())
def test_context_builds_augments_and_reports_its_prompt_cost(name, tiny_model, tokenizer, tmp_path):
    params = {"system": SYSTEM, **MATERIAL.get(name, lambda _: {})(tmp_path)}
    train_rows, held = contacts("train", 8), contacts("eval", 2)
    ctx = build_context(name, params, tokenizer, train_rows)
    assert isinstance(ctx, CONTEXTS.get(name)) and ctx.params.system == SYSTEM

    prompts = [r.prompt_and_reference()[0] for r in held]
    out = ctx.augment(prompts)
    zero = build_context("zero_shot", {"system": SYSTEM}, tokenizer).augment(prompts)  # the bare framing
    assert len(out) == len(prompts)
    for prompt, aug, bare in zip(prompts, out, zero, strict=True):
        assert aug.messages[0].role == "system" and aug.messages[0].content.startswith(SYSTEM)
        assert query_of(prompt) in query_of(aug.messages)  # the question is still asked, last
        assert ctx.count_tokens(aug.messages) >= ctx.count_tokens(bare.messages)  # additions cost prompt tokens

    trained = augment_conversations(ctx, train_rows[:2])  # context.train=true: the answers are kept as they were
    assert [r.messages[-1] for r in trained] == [r.messages[-1] for r in train_rows[:2]]

    spec = EvalSpec(max_examples=2, batch_size=2, decode=DecodeSpec(max_new_tokens=2))
    got = evaluate_rows(tiny_model, tokenizer, held, spec, ["exact_match"], progress=False, context=ctx)
    assert got["context"] == name and got["n"] == 2
    cost = sum(ctx.count_tokens(a.messages) for a in out) / len(out)
    assert got["prompt_tokens_per_request"] == round(cost, 1)  # the evaluation reports what the context costs
