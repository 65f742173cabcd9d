"""``ftatlas data inspect``: what a file looks like to the trainer, before any training."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from ftatlas.data.readers import read_file
from ftatlas.data.records import Conversation
from ftatlas.data.templating import IGNORE, TrainOn, encode, loss_spans

LOSS_OPEN, LOSS_CLOSE = "[[", "]]"  # marks the spans that carry loss in the rendered example


@dataclass
class Inspection:
    rows: int
    format: str
    length_percentiles: dict[str, int]
    turns: dict[str, float]
    loss_share: float
    truncated: int
    example: str
    checks: list[str] = field(default_factory=list)  # duplicates, over-long rows, train/eval overlap

    def lines(self) -> list[str]:
        pct = ", ".join(f"{k}={v}" for k, v in self.length_percentiles.items())
        return [
            f"rows: {self.rows} ({self.format})",
            f"tokens per row: {pct}",
            f"turns per row: min={self.turns['min']:.0f} mean={self.turns['mean']:.1f} max={self.turns['max']:.0f}",
            f"loss tokens: {self.loss_share:.1%} of all tokens; rows truncated at max_length: {self.truncated}",
            *self.checks,
            f"first example (loss-carrying text between {LOSS_OPEN} and {LOSS_CLOSE}):",
            self.example,
        ]


def _percentiles(values: list[int]) -> dict[str, int]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"min": ordered[0], "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": ordered[-1]}


def mark_loss(tokenizer: PreTrainedTokenizerBase, conv: Conversation, train_on: TrainOn) -> str:
    """The rendered text with loss spans bracketed, so a reader sees exactly what is learned."""
    text, spans = loss_spans(tokenizer, conv, train_on)
    out, pos = [], 0
    for s, e in spans:
        out += [text[pos:s], LOSS_OPEN, text[s:e], LOSS_CLOSE]
        pos = e
    out.append(text[pos:])
    return "".join(out)


def inspect_file(
    path: str, tokenizer: PreTrainedTokenizerBase, fmt: str = "auto", max_length: int = 1024,
    train_on: TrainOn = "assistant", eval_path: str | None = None,
) -> Inspection:
    """What the trainer will see, plus duplicates, over-long rows and (with ``eval_path``) train/eval overlap."""
    from ftatlas.data import checks

    rows = read_file(path, fmt)
    encoded = [encode(tokenizer, r, max_length, train_on) for r in rows]
    # lengths before truncation, so the percentiles show what max_length cuts
    full = [len(tokenizer(loss_spans(tokenizer, r, train_on)[0], add_special_tokens=False)["input_ids"])
            for r in rows]
    turns = [len(r.messages) if not r.is_text else 1 for r in rows]
    tokens = sum(len(e.input_ids) for e in encoded)
    loss = sum(sum(lab != IGNORE for lab in e.labels) for e in encoded)
    found = checks.duplicates(rows).lines + checks.long_rows(rows, full, max_length).lines
    if eval_path:
        found += checks.overlap(rows, read_file(eval_path, fmt)).lines
    return Inspection(
        rows=len(rows),
        format="text" if rows[0].is_text else "conversations",
        length_percentiles=_percentiles(full),
        turns={"min": min(turns), "mean": statistics.fmean(turns), "max": max(turns)},
        loss_share=loss / tokens if tokens else 0.0,
        truncated=sum(e.truncated for e in encoded),
        example=mark_loss(tokenizer, rows[0], train_on),
        checks=found,
    )
