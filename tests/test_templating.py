"""Loss masks: the tokens that carry loss are exactly the assistant spans (or what train_on says)."""

from __future__ import annotations

import pytest

from ftatlas.data.inspect import LOSS_CLOSE, LOSS_OPEN, inspect_file, mark_loss
from ftatlas.data.records import Conversation, Message
from ftatlas.data.templating import IGNORE, TemplateError, encode, encode_all, render_prompt

CONV = Conversation([
    Message("system", "Be brief."),
    Message("user", "What is 2+2?"),
    Message("assistant", "4"),
    Message("user", "And 3+3?"),
    Message("assistant", "Six, obviously."),
], source="t.jsonl", line=1)


def loss_ids(e):
    return [t for t, lab in zip(e.input_ids, e.labels, strict=True) if lab != IGNORE]


def segment_ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_assistant_only_loss_is_exactly_the_assistant_turns(tokenizer):
    e = encode(tokenizer, CONV, 512, "assistant")
    # Independent expectation: each assistant turn tokenized on its own, with its end-of-turn marker.
    expected = segment_ids(tokenizer, "4<|im_end|>\n") + segment_ids(tokenizer, "Six, obviously.<|im_end|>\n")
    assert loss_ids(e) == expected
    # labels equal input ids where they carry loss (no shift here; the model shifts)
    assert all(lab in (IGNORE, t) for t, lab in zip(e.input_ids, e.labels, strict=True))


def test_loss_positions_are_contiguous_per_turn(tokenizer):
    e = encode(tokenizer, CONV, 512, "assistant")
    flags = [lab != IGNORE for lab in e.labels]
    runs = sum(1 for i, f in enumerate(flags) if f and (i == 0 or not flags[i - 1]))
    assert runs == 2  # two assistant turns -> two contiguous loss spans


def test_last_assistant_only(tokenizer):
    e = encode(tokenizer, CONV, 512, "last_assistant")
    assert loss_ids(e) == segment_ids(tokenizer, "Six, obviously.<|im_end|>\n")


def test_train_on_all_marks_every_token(tokenizer):
    e = encode(tokenizer, CONV, 512, "all")
    assert e.labels == e.input_ids


def test_text_rows_train_on_all_tokens_plus_eos(tokenizer):
    e = encode(tokenizer, Conversation(text="plain words here"), 512, "assistant")
    assert e.labels == e.input_ids
    assert e.input_ids[-1] == tokenizer.eos_token_id


def test_truncation_is_counted_and_rows_without_loss_are_reported(tokenizer):
    short = encode(tokenizer, CONV, 10, "assistant")
    assert short.truncated and len(short.input_ids) == 10
    rows, stats = encode_all(tokenizer, [CONV, CONV], 10, "assistant")
    # the system prompt alone is longer than 10 tokens: no loss left, so both rows are reported, not hidden
    assert rows == [] and stats.truncated == 2 and len(stats.no_loss) == 2
    assert stats.no_loss[0] == "t.jsonl:1" and "2 skipped" in stats.summary()


def test_loss_share_statistics(tokenizer):
    rows, stats = encode_all(tokenizer, [CONV], 512, "assistant")
    assert stats.loss_tokens == len(loss_ids(rows[0]))
    assert stats.loss_share == pytest.approx(stats.loss_tokens / len(rows[0].input_ids))


def test_prompt_rendering_matches_training_prefix(tokenizer):
    """The generation prompt is the exact prefix of the training text before the answer."""
    prompt = render_prompt(tokenizer, CONV.messages[:2])
    full = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in CONV.messages[:3]], tokenize=False)
    assert full.startswith(prompt) and full[len(prompt):].startswith("4")


def test_non_prefix_template_is_a_clear_error(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    # A template that renders the last message differently from earlier ones breaks prefix stability.
    tok.chat_template = ("{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['role'] }}: "
                         "{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(TemplateError, match="t.jsonl:1.*train_on=all"):
        encode(tok, CONV, 512, "assistant")


def test_mark_loss_brackets_assistant_text(tokenizer):
    marked = mark_loss(tokenizer, CONV, "assistant")
    assert f"{LOSS_OPEN}4<|im_end|>\n{LOSS_CLOSE}" in marked
    assert marked.count(LOSS_OPEN) == 2


def test_inspect_file_reports(tokenizer, chat_file):
    rep = inspect_file(str(chat_file), tokenizer, max_length=512)
    assert rep.rows == 24 and rep.truncated == 0
    assert rep.turns == {"min": 2, "mean": 2.0, "max": 2}
    assert 0 < rep.loss_share < 0.5
    assert rep.length_percentiles["min"] <= rep.length_percentiles["p50"] <= rep.length_percentiles["max"]
    assert "[[APPLE<|im_end|>\n]]" in rep.example
