"""Ready recipes for the advice: the recommended method with the objective(s) the goal needs, written as YAML.

Each goal gets the sequence the seeds name for it: task/style -> SFT with the chosen method; knowledge -> RAG
(method none, context rag; the index comes from ``ftatlas rag ingest``) plus LoRA SFT with the passages in
the prompts for the answer format; chat -> SFT then DPO; alignment -> DPO; reasoning -> GRPO with reward
functions. Every recipe is validated with ``build_recipe`` before it is written. SFT recipes leave the budget,
learning rate and gradient checkpointing on ``auto`` (objectives/budget.py, the method's default rate, the memory
estimate); preference and online objectives, which have no auto budget, keep an explicit one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ftatlas.resolve import build_recipe


@dataclass
class Written:
    path: Path
    purpose: str
    command: str


def _data_block(data: str, max_length: int) -> dict[str, Any]:
    from ftatlas.data.builtin import BUILTINS

    if data in BUILTINS:
        return {"builtin": data, "max_length": max_length}
    return {"train": str(Path(data).resolve()), "max_length": max_length}


def plan(goal: str, model: str, data: str, method: str, method_params: dict[str, Any], batch_size: int,
         max_length: int, index_dir: str, device: str = "auto") -> list[tuple[str, str, dict[str, Any]]]:
    """(file stem, purpose, recipe dict) for each recipe of ``goal``; recipes run in the listed order."""
    m = {"name": method, **method_params}
    lora = {"name": "lora", "r": 16, "alpha": 32}
    train = {"batch_size": batch_size}  # epochs, lr and checkpointing: auto (decided from the data and machine)
    base = {"model": {"name": model, "device": device}, "data": _data_block(data, max_length)}
    out = []
    if method == "none" and goal != "knowledge":  # the map ended at in-context learning (or nothing fits)
        return [("few-shot", "in-context learning: k examples from your data in every prompt, no training",
                 base | {"method": "none", "context": {"mode": "few_shot", "k": 3}})]
    if goal in ("task", "style"):
        out.append((f"{method}-sft", f"{method} SFT on your data",
                    base | {"method": m, "objective": "sft", "train": train}))
    elif goal == "knowledge":
        ctx = {"mode": "rag", "index": index_dir, "k": 4}
        out.append(("rag", "RAG first: no training, passages in the prompt",
                    base | {"method": "none", "context": ctx}))
        out.append(("lora-rag-sft", "LoRA for the answer format, trained with the passages (RAG + LoRA)",
                    base | {"method": lora, "objective": "sft", "context": ctx | {"train": True}, "train": train}))
    elif goal == "chat":
        out.append((f"{method}-sft", "step 1: SFT on the dialogues", base | {"method": m, "objective": "sft",
                                                                            "train": train}))
        out.append(("lora-dpo", "step 2: DPO on preference pairs (set data.train to your pairs file; "
                    "`ftatlas data rejection-sample` can make them)",
                    base | {"method": lora, "objective": {"name": "dpo", "beta": 0.1},
                            "train": {"batch_size": max(1, batch_size // 2), "epochs": 1, "lr": 5e-5}}))
    elif goal == "alignment":
        out.append(("lora-dpo", "DPO on your preference pairs", base | {"method": lora, "objective": {
            "name": "dpo", "beta": 0.1}, "train": {"batch_size": max(1, batch_size // 2), "epochs": 1, "lr": 5e-5}}))
    elif goal == "reasoning":
        out.append(("lora-grpo", "GRPO with verifiable rewards (edit objective.rewards for your checker)",
                    base | {"method": lora, "objective": {
                        "name": "grpo", "num_generations": 4, "max_completion_length": 64,
                        "rewards": [{"name": "exact_match", "weight": 1.0}, {"name": "contains", "weight": 0.5}]},
                            "train": {"batch_size": 2, "max_steps": 100, "lr": 5e-4}}))
    else:
        raise ValueError(f"unknown goal {goal!r}")
    return out


def write_recipes(out_dir: Path, recipes: list[tuple[str, str, dict[str, Any]]]) -> list[Written]:
    """Validate each recipe, then write ``out_dir/<stem>.yaml`` with its purpose as a comment."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, purpose, data in recipes:
        path = out_dir / f"{stem}.yaml"
        build_recipe(data, source=str(path))  # raises RecipeError naming the field
        data = data | {"output": {"dir": "runs", "name": f"advice-{stem}"}}
        path.write_text(f"# {purpose}\n# written by `ftatlas advise`; run: ftatlas train {path}\n"
                        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        written.append(Written(path, purpose, f"ftatlas train {path}"))
    return written


def write_advice(advice: Any, out_dir: Path, model: str, data: str, goal: str, batch_size: int, max_length: int,
                 device: str) -> list[Written]:
    """Write the validated recipes that follow from an ``Advice`` (the advisor's chosen method) into ``out_dir``."""
    index = "builtin:knowledge" if data == "knowledge" else str(out_dir / "index")
    length = max_length if goal == "knowledge" else min(max_length, max(64, advice.data.shape.max))  # + passages
    return write_recipes(out_dir, plan(goal, model, data, advice.method, {}, batch_size, length, index, device))
