"""``reward_score``: the mean score of the predictions under a trained reward model (``eval.reward_model``: a run
directory trained with objective ``reward``, or a saved sequence-classification model directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ftatlas.evaluate.model_metrics import EvalBatch, MetricResult, register


def _check(spec: Any) -> None:
    if not Path(spec.reward_model).exists():
        raise ValueError(f"eval.reward_model: {spec.reward_model} does not exist (a reward run dir or model dir)")


@register("reward_score", needs="reward_model", check=_check, scale="reward model output (unbounded)")
def reward_score(batch: EvalBatch) -> MetricResult:
    """The reward model scores (original prompt, prediction): the prompt as written in the data, without the
    few-shot examples or passages the evaluated model was shown."""
    from ftatlas.objectives.reward import load_reward_scorer

    device = next(batch.model.parameters()).device.type
    size = batch.spec.batch_size
    score = load_reward_scorer(batch.spec.reward_model, device=device, batch_size=size)
    prompts = [[{"role": m.role, "content": m.content} for m in msgs] for msgs in batch.originals]
    preds = batch.predictions or []
    per: list[float | None] = []
    with tqdm(total=len(preds), desc="reward model", unit="ex", disable=not batch.progress) as bar:
        for i in range(0, len(preds), size):
            per += score(prompts[i:i + size], preds[i:i + size])
            bar.update(len(preds[i:i + size]))
    return MetricResult(per, info={"reward_model": str(batch.spec.reward_model)})
