"""``ftatlas eval --harness``: EleutherAI lm-evaluation-harness tasks on a run's model or any model.

lm-eval's own HF backend (``HFLM``) loads the weights from their local path: a run's base plus its adapter
(``peft=``), or its full ``model/``; the GGUF default alias goes through the cached safetensors copy.
The tokenizer is the one the run trained with, so ``apply_chat_template`` uses the run's chat template.
Tasks come from lm-eval's registry or from ``--harness-include`` folders of task YAMLs (for instance
``dataset_path: json`` over local files, which needs no download).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from ftatlas.models.device import resolve_device
from ftatlas.models.loading import load_tokenizer, resolve_source
from ftatlas.runs import RunDir, atomic_write

RESULTS_FILE = "eval_harness.json"
INSTALL_HINT = "pip install 'ftatlas[harness]' (or: pip install lm-eval)"


class HarnessError(ValueError):
    """A harness request that cannot run: unknown task, missing folder, a model lm-eval cannot score."""


@dataclass
class HarnessModel:
    """What lm-eval's HF backend is given: local weights, an optional adapter, the run's tokenizer."""

    pretrained: str
    tokenizer: PreTrainedTokenizerBase
    peft: str | None = None
    dtype: str = "float32"
    run: RunDir | None = None
    notes: list[str] = field(default_factory=list)


def harness_model(target: str) -> HarnessModel:
    """A run dir -> its base (+ adapter) or full model with its tokenizer; anything else -> a model source."""
    if not (Path(target) / "recipe.yaml").is_file():
        source = resolve_source(target)
        return HarnessModel(source, load_tokenizer(source))
    from ftatlas.resolve import load_recipe

    run = RunDir.open(target)
    recipe = load_recipe(run.recipe_file)
    if recipe.axes.objective.entry.head != "causal_lm":
        raise HarnessError(f"{target}: objective {recipe.objective.name} trains a scoring head, not a language "
                           "model; lm-eval tasks need a causal LM")
    dtype = "float32" if recipe.model.dtype == "auto" else recipe.model.dtype
    base = resolve_source(recipe.model.name)
    notes = []
    if recipe.context.name != "zero_shot":
        notes.append(f"lm-eval scores the model alone: the run's {recipe.context.name} context is not applied")
    method = recipe.axes.method.entry
    if not method.trains:
        return HarnessModel(base, load_tokenizer(base, recipe.model.template), None, dtype, run, notes)
    weights = run.weights_dir()
    if method.quantized_base:
        notes.append("the adapter is applied to the unquantised base (lm-eval loads the base itself)")
    if weights == run.adapter_dir:
        return HarnessModel(base, load_tokenizer(str(weights)), str(weights), dtype, run, notes)
    return HarnessModel(str(weights), load_tokenizer(str(weights)), None, dtype, run, notes)


def _lm_eval():
    try:
        import lm_eval
    except ImportError:
        raise HarnessError(f"--harness needs EleutherAI lm-evaluation-harness: {INSTALL_HINT}") from None
    return lm_eval


def load_tasks(names: list[str], include: list[Path] | None = None) -> list[Any]:
    """Check the names, then build the tasks (this loads their datasets) before any model is loaded."""
    _lm_eval()
    from lm_eval.tasks import TaskManager

    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise HarnessError("--harness: give at least one lm-eval task name, e.g. --harness hellaswag,arc_easy")
    for d in include or []:
        if not Path(d).is_dir():
            raise HarnessError(f"--harness-include {d}: no such folder (it should hold lm-eval task YAMLs)")
    paths = [str(d) for d in include or []]
    manager = None
    if paths:  # indexing lm-eval's ~15k built-in tasks takes seconds: skip it when the folders name them all
        manager = TaskManager(include_path=paths, include_defaults=False)
        if not all(_known(manager, n) for n in names):
            manager = None
    manager = manager or TaskManager(include_path=paths or None)
    unknown = [n for n in names if not _known(manager, n)]
    if unknown:
        hints = {n: difflib.get_close_matches(n, manager.all_tasks, n=3) for n in unknown}
        said = "; ".join(f"{n!r}" + (f" (did you mean {', '.join(h)}?)" if h else "") for n, h in hints.items())
        where = f" in lm-eval's registry or {', '.join(paths)}" if paths else " in lm-eval's registry"
        raise HarnessError(f"unknown lm-eval task {said}: not found{where}; custom task YAMLs go in a folder "
                           "passed with --harness-include DIR")
    built: list[Any] = []
    for name in names:
        try:
            loaded = manager.load([name])
        except Exception as e:  # a dataset that cannot be read or downloaded, a broken task YAML
            raise HarnessError(f"lm-eval could not build task {name!r}: {type(e).__name__}: {e}") from e
        # the top-level items (a group keeps its aggregate score; a tag expands to its tasks)
        children = {c for g in loaded["groups"].values() for c in g.child_names}
        built += [g for n, g in loaded["groups"].items() if n not in children]
        built += [t for n, t in loaded["tasks"].items() if n not in children]
    return built


def _known(manager: Any, name: str) -> bool:
    return name in manager.task_index or (name.endswith((".yaml", ".yml")) and Path(name).is_file())


def run_harness(
    target: str,
    tasks: list[str],
    *,
    include: list[Path] | None = None,
    limit: float | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    chat_template: bool = True,
    device: str = "auto",
    out: Path | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run lm-eval tasks on ``target`` and write its results (plus how the model was loaded) to a JSON file:
    ``eval_harness.json`` in the run dir (or the current folder for a plain model) unless ``out`` is given."""
    lm_eval = _lm_eval()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.utils import handle_non_serializable

    loaded_tasks = load_tasks(tasks, include)
    model = harness_model(target)
    if chat_template and not getattr(model.tokenizer, "chat_template", None):
        raise HarnessError(f"{target}: the tokenizer has no chat template; set model.template in the recipe, "
                           "or score raw prompts with --harness-raw")
    dev = resolve_device(device)
    lm = HFLM(pretrained=model.pretrained, tokenizer=model.tokenizer, peft=model.peft, dtype=model.dtype,
              device=dev, batch_size=batch_size)
    if limit is not None and limit >= 1:
        limit = int(limit)
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=loaded_tasks, limit=limit,
                                  num_fewshot=num_fewshot, apply_chat_template=chat_template, log_samples=False,
                                  device=dev, batch_size=batch_size)
    res["ftatlas"] = {"target": target, "pretrained": model.pretrained, "peft": model.peft, "dtype": model.dtype,
                      "device": dev, "tasks": tasks, "include": [str(d) for d in include or []],
                      "chat_template": chat_template, "chat_template_sha256": _sha(lm, chat_template),
                      "limit": limit, "num_fewshot": num_fewshot,
                      "seconds": round(time.perf_counter() - t0, 2), "notes": model.notes}
    if out is None:
        out = (model.run.path if model.run else Path.cwd()) / RESULTS_FILE
    atomic_write(out, json.dumps(res, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n")
    return res, out


def _sha(lm: Any, chat_template: bool) -> str | None:
    """Which chat template lm-eval applied (the sha256 of its text), so a result names the template it used."""
    text = lm.chat_template(True) if chat_template else None
    return hashlib.sha256(text.encode()).hexdigest() if text else None


def summary_table(result: dict[str, Any]) -> str:
    """lm-eval's own markdown table of the results (task, version, filter, n-shot, metric, value, stderr)."""
    from lm_eval.utils import make_table

    return make_table(result)
