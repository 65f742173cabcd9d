"""Scores from the model's own log-likelihoods, no generation: multiple-choice accuracy and perplexity.

Texts are rendered with the chat template (context applied) exactly as at generation time; the scored tokens are
those whose first character falls inside the answer's span of the rendered text (the same offset mapping the
training loss mask uses). Batched, right padded, longest first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ftatlas.data.records import Message
from ftatlas.data.templating import TemplateError, tokens_in_spans
from ftatlas.evaluate.choices import ChoiceRow, read_choices
from ftatlas.evaluate.generation import autocast_ctx
from ftatlas.evaluate.model_metrics import EvalBatch, MetricResult, register


def answer_span(tokenizer: Any, messages: list[Message], prompt: str, answer: str) -> tuple[str, tuple[int, int]]:
    """``prompt`` + the answer as the template renders it (end-of-turn included), and the answer's span."""
    msgs = [{"role": m.role, "content": m.content} for m in messages]
    full = tokenizer.apply_chat_template([*msgs, {"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt):
        raise TemplateError("the chat template renders prompt + answer differently from the prompt alone, so the "
                            "answer's tokens cannot be located; set model.template")
    return full, (len(prompt), len(full))


def choice_span(tokenizer: Any, messages: list[Message], prompt: str, choice: str) -> tuple[str, tuple[int, int]]:
    """Like ``answer_span``, but the span covers the choice's own characters only (not the end-of-turn)."""
    full, (start, _) = answer_span(tokenizer, messages, prompt, choice)
    pos = full.find(choice.strip(), start)
    if pos < 0:
        raise TemplateError(f"the chat template does not keep the choice {choice!r} verbatim; set model.template")
    return full, (pos, pos + len(choice.strip()))


def _encode(tokenizer: Any, text: str, span: tuple[int, int]) -> tuple[list[int], list[bool]]:
    ids, mask = tokens_in_spans(tokenizer, text, [span])
    if mask:
        mask[0] = False  # the first token has nothing before it to be predicted from
    return ids, mask


@torch.inference_mode()
def span_logprobs(model: Any, tokenizer: Any, texts: list[str], spans: list[tuple[int, int]], *,
                  batch_size: int = 16, autocast: torch.dtype | None = None, progress: bool = True,
                  desc: str = "log-likelihood") -> list[tuple[float, int]]:
    """For each text: (sum of log p(token | text before it) over the tokens in ``span``, number of such tokens)."""
    encoded = [_encode(tokenizer, t, s) for t, s in zip(texts, spans, strict=True)]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i][0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    model.eval()
    device = next(model.parameters()).device
    out: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
    with tqdm(total=len(texts), desc=desc, unit="ex", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encoded[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            att = torch.zeros((len(idx), width), dtype=torch.long)
            scored = torch.zeros((len(idx), width), dtype=torch.bool)
            for j, i in enumerate(idx):
                tokens, mask = encoded[i]
                ids[j, :len(tokens)], att[j, :len(tokens)] = torch.tensor(tokens), 1
                scored[j, :len(mask)] = torch.tensor(mask)
            with autocast_ctx(device.type, autocast):
                logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits
            logits = logits[:, -width:]  # prompt-learning methods prepend virtual tokens
            target = scored[:, 1:].to(device)
            logp = -torch.nn.functional.cross_entropy(logits[:, :-1][target].float(), ids[:, 1:].to(device)[target],
                                                      reduction="none")
            owner = torch.arange(len(idx), device=device)[:, None].expand_as(target)[target]
            sums = torch.zeros(len(idx), device=device).index_add_(0, owner, logp)
            for j, i in enumerate(idx):
                out[i] = (float(sums[j]), int(target[j].sum()))
            bar.update(len(idx))
    return out


def _choice_logliks(batch: EvalBatch) -> tuple[list[ChoiceRow], list[list[float]]]:
    """Every choice of every row scored once, shared by mc_accuracy and mc_accuracy_norm."""
    if "mc" not in batch.cache:
        rows = [read_choices(r, ref) for r, ref in zip(batch.rows, batch.references, strict=True)]
        texts, spans = [], []
        for i, row in enumerate(rows):
            for choice in row.choices:
                text, span = choice_span(batch.tokenizer, batch.messages[i], batch.prompts[i], choice)
                texts.append(text)
                spans.append(span)
        flat = span_logprobs(batch.model, batch.tokenizer, texts, spans, batch_size=batch.spec.batch_size,
                             autocast=batch.autocast, progress=batch.progress, desc="choices")
        lls, k = [], 0
        for row in rows:
            lls.append([lp for lp, _ in flat[k:k + len(row.choices)]])
            k += len(row.choices)
        batch.cache["mc"] = rows, lls
    return batch.cache["mc"]


def _mc(batch: EvalBatch, per_byte: bool) -> MetricResult:
    rows, lls = _choice_logliks(batch)
    per: list[float | None] = []
    notes = []
    for row, ll in zip(rows, lls, strict=True):
        scores = [lp / len(c.strip().encode()) for lp, c in zip(ll, row.choices, strict=True)] if per_byte else ll
        pick = int(np.argmax(scores))
        per.append(float(pick == row.gold))
        key = "picked_norm" if per_byte else "picked"
        notes.append({"choices": row.choices, "choice_loglik": [round(x, 4) for x in ll], "gold": row.gold,
                      key: pick})
    return MetricResult(per, notes=notes)


@register("mc_accuracy", needs_predictions=False)
def mc_accuracy(batch: EvalBatch) -> MetricResult:
    """The choice with the highest summed log-likelihood (given the rendered prompt) is the correct one."""
    return _mc(batch, per_byte=False)


@register("mc_accuracy_norm", needs_predictions=False)
def mc_accuracy_norm(batch: EvalBatch) -> MetricResult:
    """As mc_accuracy, with each choice's log-likelihood divided by its UTF-8 length (lm-eval's acc_norm)."""
    return _mc(batch, per_byte=True)


@register("perplexity", needs_predictions=False, lower_is_better=True, text_rows=True, scale="perplexity (>= 1)")
def perplexity(batch: EvalBatch) -> MetricResult:
    """exp(mean NLL per token) of the reference answers given their prompts (end-of-turn token included, as the
    training loss counts it), or of whole plain-text rows. Per example: that example's perplexity."""
    texts, spans = [], []
    for i, row in enumerate(batch.rows):
        if row.is_text:
            text = row.text + (batch.tokenizer.eos_token or "")
            texts.append(text)
            spans.append((0, len(text)))
        else:
            text, span = answer_span(batch.tokenizer, batch.messages[i], batch.prompts[i], batch.references[i])
            texts.append(text)
            spans.append(span)
    res = span_logprobs(batch.model, batch.tokenizer, texts, spans, batch_size=batch.spec.batch_size,
                        autocast=batch.autocast, progress=batch.progress, desc="perplexity")
    nll = np.asarray([-lp for lp, _ in res], dtype=np.float64)
    tokens = np.asarray([n for _, n in res], dtype=np.float64)

    def statistic(idx: np.ndarray) -> np.ndarray:
        total = tokens[idx].sum(axis=-1)
        return np.where(total > 0, np.exp(nll[idx].sum(axis=-1) / np.maximum(total, 1)), np.nan)

    per = [math.exp(v / n) if n else None for v, n in zip(nll, tokens, strict=True)]
    info = {"tokens": int(tokens.sum()), "nll_per_token": round(float(nll.sum() / max(tokens.sum(), 1)), 4)}
    return MetricResult(per, statistic=statistic, info=info)
