"""Quality filters (``ftatlas data filter``): rule measures and model scores, each with thresholds.

A measure is a small registered function ``fn(rows) -> list[float]`` (one value per row); a check keeps
a row when ``low <= value <= high``. Rule measures need nothing but the text: ``words``, ``chars``,
``script_share`` (share of letters in the wanted Unicode script), ``repetition`` (share of repeated word
3-grams) and ``refusal`` (1 when a refusal phrase appears). Score measures load a model: ``perplexity``
(the base model's, on the row's text), ``reward`` (the weighted reward functions or a reward model, on
the row's last answer), ``judge`` (an LLM judge's 1-10 rating, local or an endpoint) and ``judge_pairwise``
(the judge's verdict on the row's answer against another answer, asked in both orders). Every measure
computed is summarised in the report (percentiles), and every removed row is named with the checks it
failed.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftatlas.data.table import Row
from ftatlas.data.textnorm import words

REFUSALS = ("as an ai language model", "as an ai assistant", "i cannot help with", "i can't help with",
            "i cannot assist", "i can't assist", "i'm sorry, but i can", "i am sorry, but i can",
            "i'm not able to provide", "i cannot provide", "i can't provide", "i cannot fulfill",
            "i can't fulfill")  # fmt: skip

Measure = Callable[[list[Row], "FilterSpec"], list[float]]
MEASURES: dict[str, Measure] = {}


def measure(name: str) -> Callable[[Measure], Measure]:
    def deco(fn: Measure) -> Measure:
        MEASURES[name] = fn
        return fn
    return deco


@dataclass
class FilterSpec:
    """Thresholds (None = not checked) and the settings the measures need."""

    checks: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # measure -> (low, high)
    script: str = "LATIN"
    refusal_phrases: tuple[str, ...] = REFUSALS
    model: str | None = None  # perplexity: a model source or run dir
    rewards: list[Any] = field(default_factory=list)  # RewardSpec list for the reward measure
    judge: str | None = None  # judge measure: an OpenAI-compatible URL or a model source / run dir
    judge_model: str = "default"  # model name sent to a judge endpoint
    judge_teacher: Any = None  # or a ready Teacher (tests, or one already loaded for synth)
    judge_against: str | None = None  # judge_pairwise: a file of answers to compare with (matched by prompt)
    batch_size: int = 8
    max_length: int = 512  # tokens scored per row for perplexity

    def __post_init__(self) -> None:
        for name, (low, high) in self.checks.items():
            if name not in MEASURES:
                raise ValueError(f"unknown filter measure {name!r}; known: {', '.join(MEASURES)}")
            if low is not None and high is not None and low > high:
                raise ValueError(f"filter {name}: minimum {low} is above maximum {high}")


@measure("words")
def _words(rows: list[Row], spec: FilterSpec) -> list[float]:
    return [float(len(words(r.text))) for r in rows]


@measure("chars")
def _chars(rows: list[Row], spec: FilterSpec) -> list[float]:
    return [float(len(r.text)) for r in rows]


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else ""


@measure("script_share")
def _script_share(rows: list[Row], spec: FilterSpec) -> list[float]:
    """Share of letters whose Unicode name starts with the wanted script (LATIN, CYRILLIC, CJK, ARABIC...)."""
    want = spec.script.upper()
    out = []
    for r in rows:
        letters = [c for c in r.text if c.isalpha()]
        out.append(sum(_script(c) == want for c in letters) / len(letters) if letters else 0.0)
    return out


@measure("repetition")
def _repetition(rows: list[Row], spec: FilterSpec) -> list[float]:
    """1 - distinct/total word 3-grams: 0 for varied text, near 1 for a loop ("the the the ...")."""
    out = []
    for r in rows:
        toks = words(r.text)
        grams = [tuple(toks[i : i + 3]) for i in range(len(toks) - 2)]
        out.append(1 - len(set(grams)) / len(grams) if grams else 0.0)
    return out


def _answers(row: Row) -> str:
    rec = row.record
    if hasattr(rec, "chosen"):
        return rec.chosen
    if hasattr(rec, "completion"):
        return rec.completion
    if getattr(rec, "messages", None) and not hasattr(rec, "columns"):
        return "\n".join(m.content for m in rec.messages if m.role == "assistant")
    return row.text


@measure("refusal")
def _refusal(rows: list[Row], spec: FilterSpec) -> list[float]:
    """1 when an answer holds a refusal phrase (case-insensitive), else 0."""
    phrases = [p.lower() for p in spec.refusal_phrases]
    return [float(any(p in _answers(r).lower().replace("\u2019", "'") for p in phrases)) for r in rows]


@measure("perplexity")
def _perplexity(rows: list[Row], spec: FilterSpec) -> list[float]:
    """The model's perplexity on each row's text (no chat template: the words as written)."""
    from ftatlas.evaluate.loglik import span_logprobs
    from ftatlas.models.device import resolve_precision
    from ftatlas.models.trained import load_run_or_model

    if not spec.model:
        raise ValueError("the perplexity filter needs --model (a model source or run dir)")
    loaded, _, _ = load_run_or_model(spec.model)
    tok = loaded.tokenizer
    texts = [tok.decode(tok(r.text, add_special_tokens=False)["input_ids"][: spec.max_length]) for r in rows]
    autocast = resolve_precision("auto", next(loaded.model.parameters()).device.type).autocast
    scored = span_logprobs(loaded.model, tok, texts, [(0, len(t)) for t in texts], batch_size=spec.batch_size,
                           autocast=autocast, desc="perplexity")
    return [math.exp(-s / n) if n else float("inf") for s, n in scored]


@measure("reward")
def _reward(rows: list[Row], spec: FilterSpec) -> list[float]:
    """Weighted reward functions (or a reward model) on the row's last answer given its prompt."""
    from ftatlas.data.decontam import prompt_text
    from ftatlas.rewards import build_rewards, combined

    if not spec.rewards:
        raise ValueError("the reward filter needs --reward or --reward-model")
    prompts = [prompt_text(r.record) or "" for r in rows]
    answers = [_answers(r) for r in rows]
    return [float(x) for x in combined(*build_rewards(spec.rewards))(prompts, answers)]


def _judge_teacher(spec: FilterSpec, measure: str) -> Any:
    from ftatlas.data.teachers import make_teacher

    if spec.judge_teacher is None:
        if not spec.judge:
            raise ValueError(f"the {measure} filter needs --judge (an OpenAI-compatible URL or a model)")
        spec.judge_teacher = make_teacher(spec.judge, model=spec.judge_model, batch_size=spec.batch_size)
    return spec.judge_teacher


@measure("judge")
def _judge(rows: list[Row], spec: FilterSpec) -> list[float]:
    """The judge's 1-10 rating of the row's answer (the rubric of ``ftatlas eval``'s judge_score); a reply
    without a readable score is NaN, which fails any threshold."""
    from ftatlas.data.decontam import prompt_text
    from ftatlas.data.records import Message
    from ftatlas.evaluate.judge import DEFAULT_RUBRIC, parse_score, pointwise_chat
    from ftatlas.recipe import DecodeSpec

    judge = _judge_teacher(spec, "judge")
    chats = [pointwise_chat(DEFAULT_RUBRIC, [Message("user", prompt_text(r.record) or "")], _answers(r), None)
             for r in rows]
    replies = judge.complete(chats, DecodeSpec(max_new_tokens=16))
    return [float("nan") if (v := parse_score(x)) is None else v for x in replies]


def _opponents(rows: list[Row], spec: FilterSpec) -> list[str]:
    """What each answer is judged against: the answer with the same prompt in ``judge_against``, else a
    preference row's rejected answer. A row with neither is an error naming it."""
    from ftatlas.data.decontam import prompt_text
    from ftatlas.data.errors import DataError
    from ftatlas.data.table import load_table

    theirs: dict[str, str] = {}
    if spec.judge_against:
        for r in load_table(spec.judge_against):
            theirs.setdefault(prompt_text(r.record) or "", _answers(r))
    out = []
    for r in rows:
        if spec.judge_against:
            answer = theirs.get(prompt_text(r.record) or "")
            if answer is None:
                raise DataError(r.source, r.line, "prompt", f"no row with this prompt in --judge-against "
                                                            f"{spec.judge_against} to compare the answer with")
            out.append(answer)
        elif hasattr(r.record, "rejected"):
            out.append(r.record.rejected)
        else:
            raise DataError(r.source, r.line, None, "judge_pairwise compares a preference row's chosen and "
                                                    "rejected answers; for other rows give --judge-against FILE "
                                                    "(answers to the same prompts)")
    return out


@measure("judge_pairwise")
def _judge_pairwise(rows: list[Row], spec: FilterSpec) -> list[float]:
    """The judge's verdict on the row's answer against its opponent (see ``_opponents``), asked in both orders
    to cancel position bias (``ftatlas eval``'s judge_pairwise): 1 win, 0.5 tie or inconsistent, 0 loss; a
    reply without a verdict is NaN, which fails any threshold."""
    from ftatlas.data.decontam import prompt_text
    from ftatlas.data.records import Message
    from ftatlas.evaluate.judge import OUTCOME_SCORE, combine, pairwise_chat, parse_verdict
    from ftatlas.recipe import DecodeSpec

    others = _opponents(rows, spec)
    judge = _judge_teacher(spec, "judge_pairwise")
    trios = [([Message("user", prompt_text(r.record) or "")], _answers(r), o)
             for r, o in zip(rows, others, strict=True)]
    chats = [pairwise_chat(m, a, o) for m, a, o in trios] + [pairwise_chat(m, o, a) for m, a, o in trios]
    replies = judge.complete(chats, DecodeSpec(max_new_tokens=16))
    outcomes = [combine(parse_verdict(x), parse_verdict(y)) for x, y in zip(replies[:len(rows)],
                                                                               replies[len(rows):], strict=True)]
    return [float("nan") if (v := OUTCOME_SCORE.get(o)) is None else float(v) for o in outcomes]


def percentiles(values: list[float]) -> dict[str, float]:
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return {}
    pick = lambda q: finite[min(len(finite) - 1, int(q * len(finite)))]  # noqa: E731
    return {k: round(v, 4) for k, v in (("min", finite[0]), ("p10", pick(0.1)), ("p50", pick(0.5)),
                                         ("p90", pick(0.9)), ("max", finite[-1]))}


@dataclass
class FilterResult:
    kept: list[int]
    removed: list[dict[str, Any]]  # {"index", "reasons"}
    values: dict[str, list[float]]

    def distributions(self) -> dict[str, dict[str, float]]:
        return {name: percentiles(v) for name, v in self.values.items()}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.removed:
            for reason in r["reasons"]:
                name = reason.split(" ", 1)[0]
                out[name] = out.get(name, 0) + 1
        return out


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def filter_rows(rows: list[Row], spec: FilterSpec) -> FilterResult:
    """Compute every checked measure, keep the rows inside all thresholds, name the reasons for the rest."""
    values = {name: MEASURES[name](rows, spec) for name in spec.checks}
    kept, removed = [], []
    for i in range(len(rows)):
        reasons = []
        for name, (low, high) in spec.checks.items():
            v = values[name][i]
            if low is not None and not v >= low:  # NaN fails too
                reasons.append(f"{name} {_fmt(v)} < {_fmt(low)}")
            elif high is not None and not v <= high:
                reasons.append(f"{name} {_fmt(v)} > {_fmt(high)}")
        if reasons:
            removed.append({"index": i, "reasons": reasons})
        else:
            kept.append(i)
    return FilterResult(kept, removed, values)
