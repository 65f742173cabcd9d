"""``ftatlas merge RUN_DIR``: fold an adapter into its base and prove the merged model is the same model.

The merged model is re-scored against the adapter it came from on the run's held-out prompts
(max |logit difference| over every position), and the numbers land in ``merge.json``. QLoRA
adapters merge into the full-precision base (the usual practice); their report also gives the
difference to the 4-bit model they trained on, which is quantization error, not a merge bug.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import PeftModel

from ftatlas.data.splits import load_splits
from ftatlas.data.templating import render_prompt
from ftatlas.models.loading import load_model, load_tokenizer
from ftatlas.models.trained import load_recipe_base
from ftatlas.resolve import load_recipe
from ftatlas.runs import RunDir

# fp32 merge: differences are float rounding, which grows with depth and logit size, so the bound is
# relative to the largest logit (a real merge bug shifts logits by a sizeable fraction of that).
REL_TOLERANCE = 1e-4


@dataclass
class MergeResult:
    out_dir: str
    max_abs_logit_diff: float
    max_abs_logit: float
    prompts_checked: int
    within_tolerance: bool
    vs_trained_4bit: float | None = None  # qlora only


@torch.no_grad()
def _logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return model(**batch).logits.float()


def merge_run(run_dir: str | Path, out: str | Path | None = None, n_prompts: int = 8) -> MergeResult:
    run = RunDir.open(run_dir)
    recipe = load_recipe(run.recipe_file)
    method = recipe.axes.method.entry
    if not method.mergeable:
        raise ValueError(f"method {recipe.method.name!r} cannot be merged: {method.merge_note}")
    weights = run.weights_dir()
    if weights == run.model_dir:
        raise ValueError(f"method {recipe.method.name!r} already saved a full model at {weights}; "
                         "load it with AutoModelForCausalLM.from_pretrained — there is nothing to merge")
    tok = load_tokenizer(str(weights))
    objective = recipe.axes.objective.entry
    splits = load_splits(recipe.data, objective.data_kind)  # e.g. preference pairs for a dpo run
    rows = (splits.eval or splits.train)[:n_prompts]
    texts = [render_prompt(tok, r.prompt_and_reference()[0]) for r in rows]
    tok.padding_side = "left"
    batch = dict(tok(texts, return_tensors="pt", padding=True, add_special_tokens=False))

    base = load_model(recipe.model.name, template=recipe.model.template, head=objective.head)
    adapted = PeftModel.from_pretrained(base.model, str(weights)).eval()
    before = _logits(adapted, batch)
    merged = adapted.merge_and_unload().eval()
    diff = (before - _logits(merged, batch)).abs().max().item()

    vs_4bit = None
    if method.quantized_base:
        q = load_recipe_base(recipe, "cpu")
        q_adapted = PeftModel.from_pretrained(q.model, str(weights)).eval()
        vs_4bit = (before - _logits(q_adapted, batch)).abs().max().item()

    target = Path(out) if out else run.path / "merged"
    tmp = Path(tempfile.mkdtemp(dir=target.parent if target.parent.exists() else None, prefix=".merged-"))
    merged.save_pretrained(tmp)
    tok.padding_side = "right"
    tok.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(tmp), target)
    scale = before.abs().max().item()
    result = MergeResult(str(target), diff, scale, len(texts), diff <= REL_TOLERANCE * max(scale, 1.0), vs_4bit)
    run.write_json("merge.json", asdict(result))
    return result
