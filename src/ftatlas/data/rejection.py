"""Rejection sampling (``ftatlas data rejection-sample``): sample N answers per prompt, score them with
reward functions (or a reward model), keep the best as SFT data and best-vs-worst as preference pairs.

Outputs, both readable by ftatlas' own readers:

- ``sft.jsonl``: ``{"messages": [...prompt turns, {"role": "assistant", "content": best}]}`` per prompt
  whose best score reaches ``min_score``;
- ``pairs.jsonl``: TRL conversational pairs (:meth:`PreferencePair.to_json`) of the best and the worst
  answer, for prompts where they differ in score (a tie carries no preference and is skipped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ftatlas.data.preference import PreferencePair
from ftatlas.data.prompts import PromptRow
from ftatlas.data.records import Conversation, Message
from ftatlas.data.templating import render_prompt
from ftatlas.evaluate.generation import generate
from ftatlas.recipe import DecodeSpec
from ftatlas.rewards import RewardSpec, build_rewards, combined
from ftatlas.runs import atomic_write


@dataclass
class Sampled:
    row: PromptRow
    completions: list[str]
    scores: list[float]

    @property
    def best(self) -> int:
        return max(range(len(self.scores)), key=self.scores.__getitem__)

    @property
    def worst(self) -> int:
        return min(range(len(self.scores)), key=self.scores.__getitem__)


@dataclass
class RejectionResult:
    sampled: list[Sampled]
    sft_rows: int
    pairs: int
    ties: int
    sft_path: Path
    pairs_path: Path

    def summary(self) -> str:
        scores = [s for x in self.sampled for s in x.scores]
        best = [x.scores[x.best] for x in self.sampled]
        n = len(self.sampled[0].completions) if self.sampled else 0
        return (f"{len(self.sampled)} prompts x {n} samples; mean score {sum(scores) / len(scores):.3f}, "
                f"mean best {sum(best) / len(best):.3f}\n"
                f"wrote {self.sft_rows} SFT rows to {self.sft_path}\n"
                f"wrote {self.pairs} preference pairs to {self.pairs_path} ({self.ties} prompts skipped: all tied)")


def sample_and_score(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, rows: list[PromptRow],
                     rewards: list[RewardSpec], n: int, decode: DecodeSpec, *, batch_size: int = 16,
                     autocast: torch.dtype | None = None, progress: bool = True) -> list[Sampled]:
    """``n`` sampled completions per prompt, each scored by the weighted sum of ``rewards``."""
    if n < 2:
        raise ValueError(f"rejection sampling needs at least 2 samples per prompt (got n={n})")
    decode = decode.model_copy(update={"do_sample": True})
    prompts = [render_prompt(tokenizer, r.messages) for r in rows for _ in range(n)]
    outs = generate(model, tokenizer, prompts, decode, batch_size=batch_size, autocast=autocast,
                    progress=progress, desc="sampling")
    cols = [r.reward_columns() for r in rows]
    columns = {k: [c.get(k) for c in cols for _ in range(n)] for k in sorted({k for c in cols for k in c})}
    ids = tokenizer(outs, add_special_tokens=False)["input_ids"] if outs else []
    scores = combined(*build_rewards(rewards))(prompts, outs, completion_ids=ids, **columns)
    return [Sampled(r, outs[i * n : (i + 1) * n], scores[i * n : (i + 1) * n]) for i, r in enumerate(rows)]


def write_outputs(sampled: list[Sampled], out_dir: str | Path, min_score: float | None = None) -> RejectionResult:
    """Best answers -> sft.jsonl (messages), best vs worst -> pairs.jsonl (TRL conversational pairs)."""
    out = Path(out_dir)
    sft, pairs, ties = [], [], 0
    for s in sampled:
        best, worst = s.completions[s.best], s.completions[s.worst]
        if (min_score is None or s.scores[s.best] >= min_score) and best.strip():
            sft.append(Conversation([*s.row.messages, Message("assistant", best)]).to_json())
        if s.scores[s.best] > s.scores[s.worst] and best.strip() and worst.strip() and best != worst:
            pairs.append(PreferencePair(list(s.row.messages), best, worst).to_json())
        else:
            ties += 1
    sft_path, pairs_path = out / "sft.jsonl", out / "pairs.jsonl"
    atomic_write(sft_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sft))
    atomic_write(pairs_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pairs))
    return RejectionResult(sampled, len(sft), len(pairs), ties, sft_path, pairs_path)


def parse_reward(text: str) -> RewardSpec:
    """A CLI ``--reward``: a name (``exact_match``), ``module:function``, or a JSON object with params."""
    if text.lstrip().startswith("{"):
        try:
            return RewardSpec(**json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f"--reward {text!r}: not valid JSON: {e}") from None
    return RewardSpec(name=text)


def rejection_sample(target: str, data: str, rewards: list[RewardSpec], out_dir: str | Path, *, n: int = 4,
                     decode: DecodeSpec | None = None, batch_size: int = 16, max_prompts: int | None = None,
                     min_score: float | None = None, progress: bool = True) -> RejectionResult:
    """The whole step: load the model (a run dir or any model source), sample, score, write both files.

    ``data`` is a prompt file (see :mod:`ftatlas.data.prompts`) or ``builtin:<name>`` (its train split).
    """
    from ftatlas.data.prompts import read_prompts
    from ftatlas.data.splits import load_builtin
    from ftatlas.models.device import resolve_precision
    from ftatlas.models.trained import load_run_or_model

    if not rewards:
        raise ValueError("give at least one reward (--reward exact_match, --reward mymod:fn, --reward-model DIR)")
    rows = (load_builtin(data.removeprefix("builtin:"), "train", "prompts") if data.startswith("builtin:")
            else read_prompts(data))
    rows = rows[:max_prompts] if max_prompts else rows
    loaded, _recipe, _run = load_run_or_model(target)
    device = next(loaded.model.parameters()).device.type
    autocast = resolve_precision("auto", device).autocast
    sampled = sample_and_score(loaded.model, loaded.tokenizer, rows, rewards, n, decode or DecodeSpec(),
                               batch_size=batch_size, autocast=autocast, progress=progress)
    return write_outputs(sampled, out_dir, min_score)
