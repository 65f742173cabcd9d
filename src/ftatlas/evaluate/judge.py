"""LLM-as-judge: a local model (run dir, model dir, alias) or any OpenAI-compatible ``/chat/completions`` endpoint.

- ``judge_score``: pointwise, the judge rates each prediction 1-10 under a rubric (``DEFAULT_RUBRIC`` unless
  ``eval.judge.rubric`` says otherwise). Replies without a readable score are kept (``None``) and counted.
- ``judge_pairwise``: the prediction against the reference answer (or, with ``eval.judge.opponent``, another
  run's prediction for the same row, from its eval.json), judged twice with the positions swapped.
  A win or a loss counts only when both orders agree; a tie in both is a tie; anything else is inconsistent.
  Per example: win 1, loss 0, tie or inconsistent 0.5 (a position-biased judge lands at 0.5, not at a win).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from ftatlas.data.errors import DataError
from ftatlas.data.records import Message
from ftatlas.evaluate.model_metrics import EvalBatch, MetricResult, register
from ftatlas.network import is_loopback

DEFAULT_RUBRIC = (
    "Rate the answer to the user's request on a scale from 1 to 10. 10: correct, complete and clearly written. "
    "7: correct with minor flaws. 4: partly correct or missing important parts. 1: wrong, off-topic or empty. "
    "If a reference answer is given, judge correctness against it; wording may differ."
)
SYSTEM = "You are a strict, impartial judge of answers written by an AI assistant."
OUTCOME_SCORE = {"win": 1.0, "loss": 0.0, "tie": 0.5, "inconsistent": 0.5}

Chat = list[dict[str, str]]


class JudgeError(ValueError):
    """The configured judge could not be reached or answered with something other than a chat completion (a
    ValueError: the configuration points at something that does not work, reported like other bad input)."""


class Judge(Protocol):
    label: str

    def complete(self, chats: list[Chat], progress: bool, desc: str) -> list[str]: ...


class EndpointJudge:
    """POST ``{base_url}/chat/completions`` (temperature 0), a few requests in flight; retries twice."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        self.label = f"{spec.model} at {spec.base_url}"
        check_key_transport(spec)  # also here, where the key is read: whoever builds a client gets the check
        self.key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""

    def _one(self, chat: Chat) -> str:
        body = json.dumps({"model": self.spec.model, "messages": chat, "temperature": 0,
                           "max_tokens": self.spec.max_new_tokens}).encode()
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {self.key}"} if self.key else {})
        error = ""
        for attempt in range(3):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.spec.timeout_s) as resp:
                    reply = json.loads(resp.read())
                return reply["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as e:
                error = f"HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"
                if e.code < 500 and e.code != 429:
                    break  # a client error will not fix itself
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                error = str(e)
            except (KeyError, IndexError, TypeError, json.JSONDecodeError) as e:
                raise JudgeError(f"judge endpoint {self.url}: not a chat completion ({e!r})") from None
            time.sleep(0.5 * 2**attempt)
        raise JudgeError(f"judge endpoint {self.url} failed: {error}")

    def complete(self, chats: list[Chat], progress: bool, desc: str) -> list[str]:
        with ThreadPoolExecutor(self.spec.workers) as pool, \
                tqdm(total=len(chats), desc=desc, unit="ex", disable=not progress) as bar:
            out = []
            for reply in pool.map(self._one, chats):
                out.append(reply)
                bar.update(1)
        return out


class LocalJudge:
    """Any target ftatlas loads (run dir, model dir, .gguf, alias), greedy, with its own chat template."""

    def __init__(self, spec: Any, device: str, batch_size: int, autocast: Any) -> None:
        from ftatlas.models.trained import load_run_or_model

        self.spec, self.batch_size, self.autocast = spec, batch_size, autocast
        self.loaded = load_run_or_model(spec.model, device)[0]
        self.label = f"local {spec.model}"

    def complete(self, chats: list[Chat], progress: bool, desc: str) -> list[str]:
        from ftatlas.data.templating import render_prompt
        from ftatlas.evaluate.generation import generate
        from ftatlas.recipe import DecodeSpec

        tok = self.loaded.tokenizer
        prompts = [render_prompt(tok, [Message(m["role"], m["content"]) for m in chat]) for chat in chats]
        return generate(self.loaded.model, tok, prompts, DecodeSpec(max_new_tokens=self.spec.max_new_tokens),
                        batch_size=self.batch_size, autocast=self.autocast, progress=progress, desc=desc)


def make_judge(batch: EvalBatch) -> Judge:
    """One judge per evaluation (a local judge model loads once for both judge metrics)."""
    if "judge" not in batch.cache:
        spec = batch.spec.judge
        if spec.base_url:
            batch.cache["judge"] = EndpointJudge(spec)
        else:
            device = next(batch.model.parameters()).device.type
            batch.cache["judge"] = LocalJudge(spec, device, batch.spec.batch_size, batch.autocast)
    return batch.cache["judge"]


def opponent_answers(batch: EvalBatch) -> tuple[list[str], str]:
    """What judge_pairwise puts the predictions against: the references, or another run's predictions for the
    same rows (matched by ``file:line``) from its eval.json."""
    path = batch.spec.judge.opponent
    if path is None:
        return batch.references, "reference"
    saved = _opponent_file(path)
    by_source = {p.get("source"): p.get("prediction") for p in saved if isinstance(p, dict)}
    sources = [f"{r.source}:{r.line}" for r in batch.rows]
    missing = [s for s in sources if not isinstance(by_source.get(s), str)]
    if missing:
        raise DataError(path, None, "predictions", f"no prediction for {missing[0]} ({len(missing)} of "
                        f"{len(sources)} rows missing); evaluate both on the same rows")
    return [by_source[s] for s in sources], str(path)


def _opponent_file(path: str) -> list[Any]:
    if not Path(path).is_file():
        raise DataError(path, None, "eval.judge.opponent", "file does not exist (another run's eval.json)")
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"invalid JSON: {e.msg}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("predictions"), list):
        raise DataError(path, None, "predictions", "missing: not an eval.json written by ftatlas eval/train")
    return saved["predictions"]


def _check(spec: Any) -> None:
    judge = spec.judge
    if judge.opponent is not None:
        _opponent_file(judge.opponent)
    if judge.base_url and not re.match(r"https?://", judge.base_url):
        raise ValueError(f"eval.judge.base_url: expected http(s)://host[:port]/v1, got {judge.base_url!r}")
    if judge.api_key_env and not os.environ.get(judge.api_key_env):
        raise ValueError(f"eval.judge.api_key_env: environment variable {judge.api_key_env} is not set")
    check_key_transport(judge)


def check_key_transport(judge: Any) -> None:
    """An API key goes only over https or to this machine (loopback), unless ``allow_insecure`` says otherwise."""
    if not judge.api_key_env or not judge.base_url or judge.allow_insecure:
        return
    url = urllib.parse.urlsplit(judge.base_url)
    if url.scheme == "https" or is_loopback(url.hostname or ""):
        return
    raise ValueError(f"eval.judge.base_url: {judge.base_url} is plain http to another machine, and the API key in "
                     f"${judge.api_key_env} would cross the network unencrypted; use https, or set "
                     "eval.judge.allow_insecure=true to send it anyway")


# --- parsing ---------------------------------------------------------------------------------------------------

_SCORE_PATTERNS = [
    re.compile(r"\b(?:score|rating)\b\s*(?:is|of|[:=])?[\s*\[]*(\d+(?:\.\d+)?)", re.IGNORECASE),
    re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.IGNORECASE),
    re.compile(r"^\W*(\d+(?:\.\d+)?)\W*$"),  # the reply is just a number
]
_VERDICT_PATTERNS = [
    re.compile(r"\bverdict\b\s*[:=]?[\s*\[\"']*(A|B|tie)\b", re.IGNORECASE),
    re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE),  # MT-bench's [[A]] / [[B]] / [[C]] (tie)
    re.compile(r"^\W*(A|B|tie)\W*$", re.IGNORECASE),
]


def parse_score(reply: str) -> float | None:
    """The judge's 1-10 score, or None when the reply holds none (or one outside 1-10)."""
    for pattern in _SCORE_PATTERNS:
        m = pattern.search(reply.strip())
        if m:
            value = float(m.group(1))
            return value if 1 <= value <= 10 else None
    return None


def parse_verdict(reply: str) -> str | None:
    """``"A"``, ``"B"``, ``"tie"`` or None."""
    for pattern in _VERDICT_PATTERNS:
        m = pattern.search(reply.strip())
        if m:
            v = m.group(1)
            return "tie" if v.lower() in ("tie", "c") else v.upper()
    return None


def combine(first: str | None, swapped: str | None) -> str:
    """Outcome for the prediction, shown as A first and as B second."""
    if first is None or swapped is None:
        return "unparsed"
    if (first, swapped) == ("A", "B"):
        return "win"
    if (first, swapped) == ("B", "A"):
        return "loss"
    return "tie" if first == swapped == "tie" else "inconsistent"


# --- prompts ---------------------------------------------------------------------------------------------------


def _question(messages: list[Message]) -> str:
    turns = [m for m in messages if m.role != "system"]
    if len(turns) == 1:
        return turns[0].content
    return "\n".join(f"{m.role.capitalize()}: {m.content}" for m in turns)


def pointwise_chat(rubric: str, messages: list[Message], answer: str, reference: str | None) -> Chat:
    ref = f"[Reference answer]\n{reference}\n\n" if reference is not None else ""
    user = (f"{rubric}\n\n[User request]\n{_question(messages)}\n\n{ref}[Answer to rate]\n{answer}\n\n"
            "Reply with the line 'Score: N' where N is an integer from 1 to 10.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def pairwise_chat(messages: list[Message], first: str, second: str) -> Chat:
    user = (f"Compare two answers to the user's request.\n\n[User request]\n{_question(messages)}\n\n"
            f"[Answer A]\n{first}\n\n[Answer B]\n{second}\n\n"
            "Which answer is better? Reply with the line 'Verdict: A', 'Verdict: B' or 'Verdict: tie'.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# --- metrics ---------------------------------------------------------------------------------------------------


@register("judge_score", needs="judge", check=_check, scale="1-10")
def judge_score(batch: EvalBatch) -> MetricResult:
    """Mean 1-10 judge score over the replies that hold one; the rest are counted in details.unparsed."""
    spec, judge = batch.spec.judge, make_judge(batch)
    rubric = spec.rubric or DEFAULT_RUBRIC
    chats = [pointwise_chat(rubric, msgs, pred, ref if spec.show_reference else None)
             for msgs, pred, ref in zip(batch.originals, batch.predictions or [], batch.references, strict=True)]
    replies = judge.complete(chats, batch.progress, "judge (pointwise)")
    per = [parse_score(r) for r in replies]
    notes = [{"judge_reply": r} for r in replies]
    return MetricResult(per, info={"judge": judge.label, "unparsed": sum(p is None for p in per)}, notes=notes)


@register("judge_pairwise", needs="judge", check=_check)
def judge_pairwise(batch: EvalBatch) -> MetricResult:
    """Prediction vs reference, both orders; win 1 / loss 0 / tie or inconsistent 0.5 (unparsed: unscored)."""
    judge = make_judge(batch)
    preds = batch.predictions or []
    others, opponent = opponent_answers(batch)
    trios = list(zip(batch.originals, preds, others, strict=True))
    chats = [pairwise_chat(m, p, r) for m, p, r in trios] + [pairwise_chat(m, r, p) for m, p, r in trios]
    replies = judge.complete(chats, batch.progress, "judge (pairwise, both orders)")
    first, swapped = replies[:len(trios)], replies[len(trios):]
    outcomes = [combine(parse_verdict(a), parse_verdict(b)) for a, b in zip(first, swapped, strict=True)]
    per = [OUTCOME_SCORE.get(o) for o in outcomes]
    counts = {k: outcomes.count(k) for k in ("win", "loss", "tie", "inconsistent", "unparsed")}
    notes = [{"judge_replies": [a, b], "judge_outcome": o} for a, b, o in zip(first, swapped, outcomes, strict=True)]
    return MetricResult(per, info={"judge": judge.label, "opponent": opponent, **counts}, notes=notes)
