"""``train(recipe)``, top to bottom: set up -> (evaluate base) -> fit -> save -> evaluate -> report.

Each step is a small function so the quickstart, the CLI and notebooks reuse the same pieces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers import set_seed

from ftatlas.context import Context, build_context
from ftatlas.context.base import augment_conversations
from ftatlas.data.splits import Splits, load_splits
from ftatlas.distributed import from_main, is_main, preset, shards_params, unwrap, world_size, write_presets
from ftatlas.evaluate.model_metrics import check_metrics
from ftatlas.evaluate.runner import evaluate_rows
from ftatlas.measure import Measure, PhaseStats
from ftatlas.methods import METHODS, ParamCount, count_params
from ftatlas.methods.qlora import memory_note
from ftatlas.models import Loaded, require_chat_template, resolve_device, resolve_precision
from ftatlas.models.device import Precision
from ftatlas.models.trained import load_recipe_base
from ftatlas.objectives import OBJECTIVES, TrainContext
from ftatlas.objectives.tracking import log_heldout, trackers
from ftatlas.recipe import AxisSpec, Recipe, dump_recipe
from ftatlas.report import write_report
from ftatlas.runs import RunDir, RunDirError, default_run_name

console = Console(stderr=True)


@dataclass
class Session:
    """A prepared run: recipe, run dir, base model, data splits and where it computes."""

    recipe: Recipe
    run: RunDir
    loaded: Loaded
    splits: Splits
    device: str
    precision: Precision
    progress: bool = True
    results: dict[str, Any] = field(default_factory=dict)
    context: Context | None = None

    @property
    def metrics(self) -> list[str]:
        own = OBJECTIVES.get(self.recipe.objective.name).eval_metrics  # e.g. a reward model's pairwise accuracy
        return own or self.recipe.eval.metrics or self.splits.default_metrics


def prepare(recipe: Recipe, progress: bool = True) -> Session:
    """Validate everything cheap first (data, names), then create the run dir and load the model."""
    objective = OBJECTIVES.get(recipe.objective.name)
    splits = load_splits(recipe.data, objective.data_kind)
    if not objective.eval_metrics:  # unknown metrics, a missing schema or reward model: fail before training
        check_metrics(recipe.eval.metrics or splits.default_metrics, recipe.eval)
    device = resolve_device(recipe.model.device)
    precision = resolve_precision(recipe.train.precision, device)
    distributed = preset(recipe, device)  # stops here where the engine cannot run (e.g. ZeRO on CPU)
    if not is_main():  # rank 0 alone writes and reports (torchrun / accelerate launch start the others)
        console.quiet, progress = True, False
    if device == "cuda" and world_size() > 1:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # each process on its own GPU
    created = from_main(create_run_dir(recipe) if is_main() else None)  # one name for every rank
    if isinstance(created, RunDirError):
        raise created
    run = RunDir(created)
    recipe = with_normalized_context(recipe)  # e.g. a relative rag index saved as an absolute path
    if is_main():
        run.write_text("recipe.yaml", dump_recipe(recipe))
        if world_size() > 1 or recipe.train.distributed != "none":
            write_presets(run.path, recipe, device, distributed)
    set_seed(recipe.train.seed)
    console.print(f"[bold]run[/] {run.path}  [bold]data[/] {splits.note}", emoji=False)  # path:train: is no emoji
    with console.status(f"loading {recipe.model.name} ..."):
        loaded = load_recipe_base(recipe, device)  # e.g. a 4-bit base for qlora
    if objective.needs_chat_template and any(not r.is_text for r in splits.train):
        require_chat_template(loaded.tokenizer, f"objective {recipe.objective.name!r} on chat data")
    console.print(f"[bold]model[/] {loaded.source} on {device}, {precision.label}")
    session = Session(recipe, run, loaded, splits, device, precision, progress)
    session.context = setup_context(recipe, loaded.tokenizer, splits)
    return session


def create_run_dir(recipe: Recipe) -> Path | RunDirError:
    """The new run dir's path, or the error (handed to every rank, which raise it together)."""
    try:
        return RunDir.create(recipe.output.dir, recipe.output.name or default_run_name(
            recipe.method.name, recipe.objective.name), recipe.output.overwrite).path
    except RunDirError as e:
        return e


def with_normalized_context(recipe: Recipe) -> Recipe:
    params = recipe.context_params().model_dump(exclude_unset=True)
    return recipe.model_copy(update={"context": AxisSpec(name=recipe.context.name, **params)})


def setup_context(recipe: Recipe, tokenizer: Any, splits: Splits) -> Context | None:
    """Build the recipe's context; with ``context.train`` the training prompts get it too (e.g. RAG-aware SFT)."""
    if recipe.context.name == "zero_shot" and not recipe.context.params():
        return None
    with console.status(f"preparing context {recipe.context.name} ..."):
        chat_rows = splits.train if OBJECTIVES.get(recipe.objective.name).data_kind == "conversations" else []
        ctx = build_context(recipe.context.name, recipe.context_params(), tokenizer, chat_rows)
    console.print(f"[bold]context[/] {recipe.context.name} {recipe.context.params()}")
    if ctx.params.train and METHODS.get(recipe.method.name).trains:
        if OBJECTIVES.get(recipe.objective.name).data_kind != "conversations":
            raise ValueError(f"context.train=true needs conversation data; objective {recipe.objective.name!r} "
                             "trains on another kind of row")
        splits.train = augment_conversations(ctx, splits.train)
        console.print(f"[bold]context[/] applied to {len(splits.train)} training prompts (context.train=true)")
    return ctx


def evaluate(session: Session, model: torch.nn.Module | None = None, desc: str = "evaluating") -> dict:
    """Generate on the held-out split and score (or the objective's own evaluation, e.g. a reward model's
    pairwise accuracy); records wall time and peak memory."""
    objective = OBJECTIVES.get(session.recipe.objective.name)()
    with Measure(session.device) as m:
        own = objective.evaluate(model or session.loaded.model, session.loaded.tokenizer, session.splits.eval,
                                 session.recipe, progress=session.progress)
    if own is not None:
        own["peak_memory_bytes"] = m.stats.peak_bytes
        return own
    with Measure(session.device) as m:
        result = evaluate_rows(model or session.loaded.model, session.loaded.tokenizer,
                               objective.eval_rows(session.splits.eval),
                               session.recipe.eval, session.metrics, autocast=session.precision.autocast,
                               progress=session.progress, desc=desc, context=session.context)
    result["peak_memory_bytes"] = m.stats.peak_bytes
    return result


@dataclass
class FitResult:
    model: Any
    params: ParamCount
    stats: PhaseStats
    tokens: int
    train_loss: float | None
    data_stats: dict

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.stats.seconds if self.stats.seconds else 0.0


def fit(session: Session, resume: bool = False) -> FitResult:
    """Apply the method, build the objective's trainer, train, save weights into the run dir."""
    r = session.recipe
    method = METHODS.get(r.method.name)()
    if getattr(session.loaded.model, "is_loaded_in_4bit", False):
        session.results["quantization"] = memory_note(session.loaded.model)
        console.print(f"[bold]4-bit base[/] {session.results['quantization']}")
    model = method.apply(session.loaded.model, r.method_params())
    params = count_params(model)
    console.print(f"[bold]method[/] {r.method.name}: {params}")
    objective = OBJECTIVES.get(r.objective.name)()
    trainer = objective.build(TrainContext(r, model, session.loaded.tokenizer, session.splits.train,
                                           session.splits.eval, session.run, session.device,
                                           session.precision, session.progress))
    stats = objective.stats()  # objectives that template a fixed dataset report its token/loss shares
    data_stats = {k: v.__dict__ | {"loss_share": v.loss_share} for k, v in stats.items()}
    if "train" in stats:
        console.print(f"[bold]train data[/] {stats['train'].summary()}")
    with trackers(trainer, r, session.run) as mlflow_run:  # train.report_to
        with Measure(session.device) as m:
            out = trainer.train(resume_from_checkpoint=resume or None)
        if trainer.eval_dataset is not None:
            trainer.evaluate()  # final held-out loss into metrics.jsonl
    session.results["mlflow_run"] = mlflow_run
    if shards_params(r):  # FSDP / ZeRO-3: the Trainer gathers the shards (every rank takes part), rank 0 writes
        target = session.run.adapter_dir if hasattr(unwrap(model), "peft_config") else session.run.model_dir
        trainer.save_model(str(target))
        if is_main():
            session.loaded.tokenizer.save_pretrained(target)
    elif is_main():
        session.run.save_weights(unwrap(model), session.loaded.tokenizer)
    tokens = int(trainer.state.num_input_tokens_seen)
    return FitResult(model, params, m.stats, tokens, out.training_loss, data_stats)


def train(recipe: Recipe, progress: bool = True, resume: bool = False, eval_before: bool = False) -> Session:
    """The whole recipe: returns the session, whose run dir holds weights, eval.json and report.md."""
    session = prepare(recipe, progress)
    if eval_before and is_main():
        session.results["before"] = evaluate(session, desc="base model")
        session.run.write_json("eval_before.json", session.results["before"])
    if not METHODS.get(recipe.method.name).trains:  # method none: the base model with its context
        if not is_main():
            return session
        session.results["after"] = evaluate(session, desc=f"base model, context {recipe.context.name}")
        session.run.write_json("eval.json", session.results["after"])
        write_report(session)
        return session
    fit_result = fit(session, resume)
    session.results["fit"] = fit_result
    if not is_main():
        return session  # rank 0 evaluates and reports
    session.results["after"] = evaluate(session, fit_result.model, desc="trained model")
    log_heldout(session.results["mlflow_run"], recipe, session.results["after"])
    session.run.write_json("eval.json", session.results["after"])
    if eval_before:
        session.run.write_json("eval_after.json", session.results["after"])
    write_report(session)
    return session
