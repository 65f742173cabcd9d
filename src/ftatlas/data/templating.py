"""Chat templating and loss masks: which tokens carry loss.

We own the masking rather than rely on ``{% generation %}`` markers (SmolLM2's template has none):
the loss spans are found by rendering growing prefixes of the conversation through the tokenizer's
own template, then mapped to tokens with the fast tokenizer's character offsets. The same template
renders prompts at generation time, so train and inference formats cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import PreTrainedTokenizerBase

from ftatlas.data.records import Conversation, Message

TrainOn = Literal["assistant", "all", "last_assistant"]
IGNORE = -100


class TemplateError(ValueError):
    """The chat template cannot be used to locate assistant spans."""


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[Message], gen_prompt: bool) -> str:
    msgs = [{"role": m.role, "content": m.content} for m in messages]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen_prompt)


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> str:
    """The text the model sees before it answers (generation prompt appended)."""
    return _render(tokenizer, messages, gen_prompt=True)


def loss_spans(tokenizer: PreTrainedTokenizerBase, conv: Conversation, train_on: TrainOn) -> tuple[str, list]:
    """Render ``conv`` and return (text, [(start, end) character spans that carry loss])."""
    if conv.is_text:
        text = conv.text + (tokenizer.eos_token or "")
        return text, [(0, len(text))]
    full = _render(tokenizer, conv.messages, gen_prompt=False)
    if train_on == "all":
        return full, [(0, len(full))]
    spans = []
    for i, msg in enumerate(conv.messages):
        if msg.role != "assistant":
            continue
        start = len(_render(tokenizer, conv.messages[:i], gen_prompt=True)) if i else 0
        head = _render(tokenizer, conv.messages[: i + 1], gen_prompt=False)
        if not full.startswith(head) or start > len(head):
            raise TemplateError(
                f"{conv.source}:{conv.line}: the chat template renders a conversation differently from its "
                "prefixes, so assistant tokens cannot be located; use data.train_on=all or set model.template"
            )
        spans.append((start, len(head)))
    if train_on == "last_assistant":
        spans = spans[-1:]
    return full, spans


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def n_loss(self) -> int:
        return sum(lab != IGNORE for lab in self.labels)


def tokens_in_spans(tokenizer: PreTrainedTokenizerBase, text: str, spans: list[tuple[int, int]]
                    ) -> tuple[list[int], list[bool]]:
    """Token ids of ``text`` and, per token, whether its first character falls inside one of ``spans``."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    inside = [any(s <= start < e for s, e in spans) for start, _end in enc["offset_mapping"]]
    return enc["input_ids"], inside


def encode(
    tokenizer: PreTrainedTokenizerBase, conv: Conversation, max_length: int, train_on: TrainOn = "assistant"
) -> Encoded:
    """Tokenize one conversation; labels are -100 outside the loss spans; truncate on the right."""
    text, spans = loss_spans(tokenizer, conv, train_on)
    ids, inside = tokens_in_spans(tokenizer, text, spans)
    labels = [tok if keep else IGNORE for tok, keep in zip(ids, inside, strict=True)]
    truncated = len(ids) > max_length
    return Encoded(ids[:max_length], labels[:max_length], truncated)


@dataclass
class EncodeStats:
    """What a dataset looks like after templating: reported so nothing changes silently."""

    rows: int = 0
    tokens: int = 0
    loss_tokens: int = 0
    truncated: int = 0
    no_loss: list[str] = field(default_factory=list)  # "file:line" of rows left with no loss tokens

    @property
    def loss_share(self) -> float:
        return self.loss_tokens / self.tokens if self.tokens else 0.0

    def summary(self) -> str:
        s = (f"{self.rows} rows, {self.tokens} tokens, {self.loss_share:.1%} carry loss, "
             f"{self.truncated} truncated")
        if self.no_loss:
            s += f", {len(self.no_loss)} skipped with no loss tokens left (first: {self.no_loss[0]})"
        return s


def encode_all(
    tokenizer: PreTrainedTokenizerBase, rows: list[Conversation], max_length: int, train_on: TrainOn
) -> tuple[list[Encoded], EncodeStats]:
    """Encode rows; rows whose loss tokens were all truncated away are skipped and counted in stats."""
    out, stats = [], EncodeStats()
    for conv in rows:
        e = encode(tokenizer, conv, max_length, train_on)
        stats.rows += 1
        stats.truncated += e.truncated
        if e.n_loss == 0:
            stats.no_loss.append(f"{conv.source}:{conv.line}")
            continue
        stats.tokens += len(e.input_ids)
        stats.loss_tokens += e.n_loss
        out.append(e)
    return out, stats
