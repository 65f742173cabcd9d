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
from rich.markup import escape
from transformers import set_seed

from ftatlas import allocator
from ftatlas.advise.checkpointing import Decision, plan_checkpointing
from ftatlas.context import Context, build_context
from ftatlas.context.base import augment_conversations
from ftatlas.data.splits import Splits, load_splits
from ftatlas.data.stream import StreamedRows, sample
from ftatlas.data.templating import encode_all
from ftatlas.distributed import (
    from_main,
    is_main,
    preset,
    record_engine,
    shards_params,
    unwrap,
    world_size,
    write_presets,
)
from ftatlas.evaluate.model_metrics import check_metrics
from ftatlas.evaluate.runner import check_eval_rows, evaluate_rows
from ftatlas.methods import ParamCount, count_params
from ftatlas.methods.qlora import memory_note
from ftatlas.models import Loaded, require_chat_template, resolve_device, resolve_precision
from ftatlas.models.device import Precision
from ftatlas.models.loading import check_model_name
from ftatlas.models.trained import load_recipe_base, load_run_or_model
from ftatlas.objectives import TrainContext
from ftatlas.objectives.checkpoints import atomic_checkpoints
from ftatlas.objectives.tracking import log_heldout, trackers
from ftatlas.phase_stats import Measure, PhaseStats
from ftatlas.recipe import AxisSpec, Recipe, dump_recipe
from ftatlas.resolve import resolve
from ftatlas.run_report import write_report
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
        return eval_metrics(self.recipe, self.splits)


def eval_metrics(recipe: Recipe, splits: Splits) -> list[str]:
    """The objective's own (e.g. a reward model's pairwise accuracy), the recipe's, or the defaults for the data."""
    objective = recipe.axes.objective.entry()
    return objective.eval_metrics or recipe.eval.metrics or objective.default_metrics(
        objective.eval_rows(splits.eval), splits.default_metrics)


def check_evaluation(recipe: Recipe, splits: Splits, rows: bool) -> None:
    """Unknown metrics, a missing schema or reward model and (with ``rows``) held-out rows the metrics cannot
    score fail here, before the run dir exists and before training."""
    objective = recipe.axes.objective.entry
    if objective.eval_metrics:  # the objective scores itself (e.g. a reward model's pairwise accuracy)
        return
    names = eval_metrics(recipe, splits)
    check_metrics(names, recipe.eval)
    if rows:
        held = objective().eval_rows(splits.eval)
        check_eval_rows(held[: recipe.eval.max_examples] if recipe.eval.max_examples else held, names)


def prepare(recipe: Recipe, progress: bool = True, resume: bool = False, evaluates: bool = False) -> Session:
    """Validate everything cheap first (data, names), then create the run dir and load the model. With ``resume``
    the existing run dir is reused as it is (its recipe.yaml kept) and must hold a complete checkpoint. With
    ``evaluates`` (``train``) the held-out rows must be scorable; dry runs that only take steps skip that."""
    objective = recipe.axes.objective.entry
    check_model_name(recipe.model.name)  # an unknown alias or missing path fails before the run dir exists
    splits = load_splits(recipe.data, objective.data_kind)
    check_evaluation(recipe, splits, evaluates)
    device = resolve_device(recipe.model.device)
    precision = resolve_precision(recipe.train.precision, device)
    distributed = preset(recipe, device)  # stops here where the engine cannot run (e.g. ZeRO on CPU)
    if not is_main():  # rank 0 alone writes and reports (torchrun / accelerate launch start the others)
        console.quiet, progress = True, False
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the weight-loading bar of every rank
    if device == "cuda" and world_size() > 1:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # each process on its own GPU
    checkpoint = None
    if resume:
        run, checkpoint = RunDir.for_resume(recipe.output.dir, recipe.output.name)
    else:
        created = from_main(create_run_dir(recipe) if is_main() else None)  # one name for every rank
        if isinstance(created, RunDirError):
            raise created
        run = RunDir(created)
    recipe = with_normalized_context(recipe)  # e.g. a relative rag index saved as an absolute path
    if is_main() and not resume:
        run.write_text("recipe.yaml", dump_recipe(recipe))
        if world_size() > 1 or recipe.train.distributed != "none":
            write_presets(run.path, recipe, device, distributed)
    set_seed(recipe.train.seed)
    console.print(f"[bold]run[/] {run.path}  [bold]data[/] {splits.note}", emoji=False)  # path:train: is no emoji
    if is_main():
        check_overlap(run, splits)
    if objective.experimental:
        console.print(f"[yellow]experimental[/] objective {recipe.objective.name!r}: {objective.experimental}")
    with console.status(f"loading {recipe.model.name} ..."):
        loaded = load_recipe_base(recipe, device)  # e.g. a 4-bit base for qlora
    if objective.needs_chat_template and any(not r.is_text for r in sample(splits.train)):
        require_chat_template(loaded.tokenizer, f"objective {recipe.objective.name!r} on chat data")
    warn_untemplated(recipe, splits, loaded.tokenizer)
    heap = f", heap allocator {allocator.active()}" if device == "cpu" else ""  # allocator.py: why it matters
    console.print(f"[bold]model[/] {loaded.source} on {device}, {precision.label}{heap}")
    session = Session(recipe, run, loaded, splits, device, precision, progress)
    if checkpoint is not None:
        session.results["resume_from"] = checkpoint
        console.print(f"[bold]resume[/] from {checkpoint}")
    session.context = setup_context(recipe, loaded.tokenizer, splits)
    return session


def check_overlap(run: RunDir, splits: Splits) -> int:
    """Warn when training rows hold held-out rows (a leak inflates every score); the count goes to
    data_checks.json, where the arena reads it before giving a verdict."""
    from ftatlas.data import checks

    # a streamed split: its first rows (reading all of it twice would defeat streaming)
    found = checks.overlap(sample(splits.train), splits.eval, label="held-out") if splits.eval else None
    if found and found.count:
        console.print("[bold yellow]warning[/] " + escape("\n".join(found.lines)), highlight=False)  # rows: no markup
    run.write_json("data_checks.json", {"train_eval_overlap": found.count if found else 0,
                                        "overlap": found.lines if found else []})
    return found.count if found else 0


def warn_untemplated(recipe: Recipe, splits: Splits, tokenizer: Any) -> None:
    """Standard-form (plain string) preference prompts reach an instruct model without its chat template."""
    kind = recipe.axes.objective.entry.data_kind
    if kind in ("preference", "unpaired") and splits.train[0].is_text and getattr(tokenizer, "chat_template", None):
        console.print("[yellow]warning[/] the preference rows are in the standard (plain string) form, so the "
                      "model's chat template is not applied to them; set data.template=chat to train and "
                      "evaluate them as user messages")
def create_run_dir(recipe: Recipe) -> Path | RunDirError:
    """The new run dir's path, or the error (handed to every rank, which raise it together)."""
    try:
        return RunDir.create(recipe.output.dir, recipe.output.name or default_run_name(
            recipe.method.name, recipe.objective.name), recipe.output.overwrite).path
    except RunDirError as e:
        return e


def with_normalized_context(recipe: Recipe) -> Recipe:
    params = recipe.context_params().model_dump(exclude_unset=True)
    return resolve(recipe.model_copy(update={"context": AxisSpec(name=recipe.context.name, **params)}))


def setup_context(recipe: Recipe, tokenizer: Any, splits: Splits) -> Context | None:
    """Build the recipe's context; with ``context.train`` the training prompts get it too (e.g. RAG-aware SFT)."""
    if recipe.context.name == "zero_shot" and not recipe.context.params():
        return None
    with console.status(f"preparing context {recipe.context.name} ..."):
        chat_rows = splits.train if recipe.axes.objective.entry.data_kind == "conversations" else []
        ctx = build_context(recipe.context.name, recipe.context_params(), tokenizer, chat_rows)
    console.print(f"[bold]context[/] {recipe.context.name} {recipe.context.params()}")
    if ctx.params.train and recipe.axes.method.entry.trains:
        if isinstance(splits.train, StreamedRows):
            raise ValueError("context.train=true rewrites every training prompt in memory; data.train is streamed "
                             "(streaming: true): set streaming: false or context.train: false")
        if recipe.axes.objective.entry.data_kind != "conversations":
            raise ValueError(f"context.train=true needs conversation data; objective {recipe.objective.name!r} "
                             "trains on another kind of row")
        splits.train = augment_conversations(ctx, splits.train)
        console.print(f"[bold]context[/] applied to {len(splits.train)} training prompts (context.train=true)")
    return ctx


def evaluate(session: Session, model: torch.nn.Module | None = None, desc: str = "evaluating") -> dict:
    """Generate on the held-out split and score (or the objective's own evaluation, e.g. a reward model's
    pairwise accuracy); records wall time and peak memory."""
    objective = session.recipe.axes.objective.entry()
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
    method = r.axes.method.entry()
    if getattr(session.loaded.model, "is_loaded_in_4bit", False):
        session.results["quantization"] = memory_note(session.loaded.model)
        console.print(f"[bold]4-bit base[/] {session.results['quantization']}")
    model = method.apply(session.loaded.model, r.method_params())
    params = count_params(model)
    console.print(f"[bold]method[/] {r.method.name}: {params}")
    objective = r.axes.objective.entry()
    decision = checkpointing_decision(session, model)
    console.print(f"[bold]gradient checkpointing[/] {decision.reason}")
    ctx = TrainContext(r, model, session.loaded.tokenizer, session.splits.train, session.splits.eval, session.run,
                       session.device, session.precision, session.progress, checkpointing=decision.on)
    trainer = objective.build(ctx)
    stats = objective.stats()  # objectives that template a fixed dataset report its token/loss shares
    if "train" in stats:
        streamed = isinstance(session.splits.train, StreamedRows)  # templated as training reads it
        summary = "streamed: counted as training reads it" if streamed else stats["train"].summary()
        console.print(f"[bold]train data[/] {summary}")
    plan = {"lr": r.learning_rate(), "lr_source": "train.lr" if r.train.lr != "auto" else
            f"method {r.method.name}'s default (train.lr: auto)", "checkpointing": decision.__dict__,
            "budget": ctx.budget.as_dict() if ctx.budget else None}
    console.print(f"[bold]learning rate[/] {plan['lr']:g} ({plan['lr_source']})")
    if ctx.budget is not None:
        console.print(f"[bold]budget[/] {ctx.budget.reason}")
    if hasattr(trainer, "_save_checkpoint"):
        atomic_checkpoints(trainer)
    checkpoint = session.results.get("resume_from") if resume else None
    if resume and checkpoint is None:  # a session prepared without resume=True
        checkpoint = RunDir.for_resume(session.run.path.parent, session.run.path.name)[1]
    if checkpoint is not None and is_main():  # the rows logged after it (before the kill) are logged again from it
        session.run.truncate_metrics(int(checkpoint.name.split("-")[-1]))
    with trackers(trainer, r, session.run) as mlflow_run:  # train.report_to
        with Measure(session.device) as m:
            out = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        restored = ctx.budget is not None and ctx.budget.early_stopping and \
            trainer.state.best_global_step not in (None, trainer.state.global_step)
        if trainer.eval_dataset is not None and (restored or ctx.budget is None or not ctx.budget.early_stopping):
            trainer.evaluate()  # final held-out loss into metrics.jsonl (of the restored weights under early stopping)
    session.results["mlflow_run"] = mlflow_run
    data_stats = {k: v.__dict__ | {"loss_share": v.loss_share} for k, v in stats.items()}  # streamed: as read
    plan["kept"] = kept_step(session, trainer, ctx)
    if is_main():
        session.run.write_json("plan.json", plan)
        if world_size() > 1:
            record_engine(session.run.path, trainer)
    session.results["plan"] = plan
    model = save_trained(session, trainer, model)
    tokens = int(trainer.state.num_input_tokens_seen)
    return FitResult(model, params, m.stats, tokens, out.training_loss, data_stats)


def save_trained(session: Session, trainer: Any, model: Any) -> Any:
    """Write the trained weights into the run dir (rank 0); return the model rank 0 evaluates."""
    if not shards_params(session.recipe):
        if is_main():
            session.run.save_weights(unwrap(model), session.loaded.tokenizer)
        return model
    # FSDP / ZeRO-3: the Trainer gathers the shards (every rank takes part) and rank 0 writes them; the model in
    # memory holds only this rank's shard, so rank 0 evaluates the saved weights
    target = session.run.adapter_dir if hasattr(unwrap(model), "peft_config") else session.run.model_dir
    trainer.save_model(str(target))
    if not is_main():
        return model
    session.loaded.tokenizer.save_pretrained(target)
    return load_run_or_model(str(session.run.path), session.device)[0].model


def checkpointing_decision(session: Session, model: Any) -> Decision:
    """``gradient_checkpointing`` for this run: explicit, or decided from the memory estimate (conversation rows:
    their templated lengths are what the estimate needs)."""
    r = session.recipe
    lengths = loss_tokens = None
    if r.axes.objective.entry.data_kind == "conversations" and session.splits.train:
        encoded, enc_stats = encode_all(session.loaded.tokenizer, sample(session.splits.train), r.data.max_length,
                                        r.data.train_on)  # a streamed split: its first rows stand for it
        lengths, loss_tokens = [len(e.input_ids) for e in encoded], enc_stats.loss_tokens
    return plan_checkpointing(r, getattr(model, "config", None), lengths, loss_tokens, session.device,
                              session.precision.autocast is not None)


def kept_step(session: Session, trainer: Any, ctx: TrainContext) -> dict[str, Any]:
    """Which step's weights the run keeps; under early stopping the best by held-out loss (also a metrics line)."""
    state = trainer.state
    kept: dict[str, Any] = {"step": state.global_step, "stopped_early": False}
    if ctx.budget is not None and ctx.budget.early_stopping and state.best_global_step:
        planned = state.max_steps
        kept = {"step": state.best_global_step, "best_eval_loss": state.best_metric,
                "last_step": state.global_step, "planned_steps": planned,
                "stopped_early": state.global_step < planned}
        if is_main():
            session.run.log_metrics({"step": state.global_step, "kept_step": state.best_global_step,
                                     "best_eval_loss": state.best_metric, "stopped_early": kept["stopped_early"]})
        where = f"stopped at step {state.global_step} of {planned}" if kept["stopped_early"] else "ran the budget"
        console.print(f"[bold]early stopping[/] {where}; kept step {state.best_global_step} "
                      f"(held-out loss {state.best_metric:.4f})")
    return kept


def train(recipe: Recipe, progress: bool = True, resume: bool = False, eval_before: bool = False) -> Session:
    """The whole recipe: returns the session, whose run dir holds weights, eval.json and report.md."""
    session = prepare(recipe, progress, resume, evaluates=True)
    if eval_before and is_main():
        session.results["before"] = evaluate(session, desc="base model")
        session.run.write_json("eval_before.json", session.results["before"])
    if not recipe.axes.method.entry.trains:  # method none: the base model with its context
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
