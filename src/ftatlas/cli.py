"""The ``ftatlas`` command line: one thin sub-command per verb, each calling one library function."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ftatlas.data.errors import DataError
from ftatlas.models.loading import ModelLoadError
from ftatlas.recipe import DecodeSpec, RecipeError
from ftatlas.registry import UnknownNameError
from ftatlas.runs import RunDirError

app = typer.Typer(help="Advise, run and measure every way to adapt an LLM.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Inspect and validate data files.", no_args_is_help=True)
methods_app = typer.Typer(help="The method axis (what learns).", no_args_is_help=True)
config_app = typer.Typer(help="Recipes: validate and show the schema.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(methods_app, name="methods")
app.add_typer(config_app, name="config")
context_app = typer.Typer(help="The context axis (what the model sees at inference).", no_args_is_help=True)
app.add_typer(context_app, name="context")
rag_app = typer.Typer(help="Retrieval-augmented generation: build, query and score a document index.",
                      no_args_is_help=True)
app.add_typer(rag_app, name="rag")
out = Console(width=None if sys.stdout.isatty() else 140)  # tables stay readable when piped to a file
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
# Library deprecation chatter (transformers/peft renames) is not actionable for a user of this CLI.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\.")

# Errors a user can fix: printed as one clear message, exit code 2, no traceback.
USER_ERRORS = (RecipeError, DataError, ModelLoadError, RunDirError, UnknownNameError, FileNotFoundError, ValueError)

Overrides = Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. train.lr=1e-4 method.r=8")]


def _fail(e: Exception) -> None:
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)  # e.g. "ftatlas[ray]" is not markup
    raise typer.Exit(2)


def _decode(max_new_tokens: int, beams: int, temperature: float, top_k: int, top_p: float,
            repetition_penalty: float, sample: bool, seed: int) -> DecodeSpec:
    return DecodeSpec(max_new_tokens=max_new_tokens, num_beams=beams, temperature=temperature, top_k=top_k,
                      top_p=top_p, repetition_penalty=repetition_penalty, do_sample=sample, seed=seed)


# Decoding flags shared by eval and chat.
MaxNew = Annotated[int, typer.Option("--max-new-tokens", help="tokens generated per answer")]
Beams = Annotated[int, typer.Option("--beams", help="beam search width (1 = greedy or sampling)")]
Temp = Annotated[float, typer.Option("--temperature", help="sampling temperature (with --sample)")]
TopK = Annotated[int, typer.Option("--top-k", help="top-k sampling (with --sample)")]
TopP = Annotated[float, typer.Option("--top-p", help="nucleus sampling (with --sample)")]
RepPen = Annotated[float, typer.Option("--repetition-penalty", help="> 1 discourages repeats")]
Sample = Annotated[bool, typer.Option("--sample/--greedy", help="sample instead of greedy decoding")]
Seed = Annotated[int, typer.Option("--seed", help="sampling seed")]
# Context flags shared by eval and chat.
ContextName = Annotated[str | None, typer.Option(
    "--context", help="context mode: zero_shot, few_shot or rag (default: the run's recipe context)")]
ContextSet = Annotated[list[str] | None, typer.Option(
    "--ctx", help="context parameter key=value, repeatable, e.g. --ctx index=idx --ctx k=2")]


@app.command()
def quickstart(overrides: Overrides = None) -> None:
    """Base vs LoRA SFT on the built-in task with the embedded SmolLM2-135M: a measured before/after."""
    from ftatlas.pipeline import train
    from ftatlas.quickstart import quickstart_recipe
    from ftatlas.report import comparison_rows, rich_table

    try:
        recipe = quickstart_recipe(["output.overwrite=true", *(overrides or [])])
        session = train(recipe, eval_before=True)
    except USER_ERRORS as e:
        _fail(e)
    out.print(rich_table(comparison_rows(session), f"held-out {recipe.data.builtin} (n="
                         f"{session.results['after']['n']}), metrics in %"))
    out.print(f"run directory: {session.run.path}  (try: ftatlas chat {session.run.path} --prompt ...)")


@app.command("train")
def train_cmd(
    recipe_file: Annotated[Path, typer.Argument(help="recipe YAML")],
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(help="resume from the run's last checkpoint")] = False,
    eval_before: Annotated[bool, typer.Option(help="also score the base model first")] = False,
) -> None:
    """Train from a recipe; writes weights, metrics.jsonl, eval.json and report.md into the run dir."""
    from ftatlas.pipeline import train
    from ftatlas.recipe import load_recipe
    from ftatlas.report import comparison_rows, rich_table

    try:
        recipe = load_recipe(recipe_file, overrides)
        if resume:
            recipe.output.overwrite = True
        session = train(recipe, resume=resume, eval_before=eval_before)
    except USER_ERRORS as e:
        _fail(e)
    out.print(rich_table(comparison_rows(session), "held-out metrics (%)"))
    out.print(f"run directory: {session.run.path}")


@app.command("eval")
def eval_cmd(
    target: Annotated[str, typer.Argument(help="run directory, or a model (dir, .gguf, alias, hub id)")],
    data: Annotated[str | None, typer.Option("--data", help="held-out file; default: the run's held-out split")] = None,
    metrics: Annotated[str | None, typer.Option(help="comma-separated metric names")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="where to write eval.json")] = None,
    max_examples: Annotated[int | None, typer.Option(help="score only the first N rows")] = None,
    batch_size: Annotated[int, typer.Option(help="prompts generated together")] = 16,
    max_new_tokens: MaxNew = 64, beams: Beams = 1, temperature: Temp = 1.0, top_k: TopK = 50,
    top_p: TopP = 1.0, repetition_penalty: RepPen = 1.0, sample: Sample = False, seed: Seed = 0,
    context: ContextName = None, ctx: ContextSet = None,
    eval_set: Annotated[list[str] | None, typer.Option(
        "--eval-set", help="a field of the recipe's eval block, KEY=VALUE (repeatable), e.g. json_schema=s.json, "
        "reward_model=runs/rm, judge.model=smollm2-135m, judge.base_url=http://host/v1")] = None,
    harness: Annotated[str | None, typer.Option(
        "--harness", help="EleutherAI lm-evaluation-harness task names, comma-separated, instead of --data/--metrics; "
        "writes eval_harness.json")] = None,
    harness_include: Annotated[list[Path] | None, typer.Option(
        "--harness-include", help="folder of your own lm-eval task YAMLs (repeatable)")] = None,
    limit: Annotated[float | None, typer.Option(
        "--limit", help="with --harness: examples per task (N, or a fraction below 1)")] = None,
    num_fewshot: Annotated[int | None, typer.Option(
        "--num-fewshot", help="with --harness: few-shot examples per prompt (default: each task's own)")] = None,
    harness_chat: Annotated[bool, typer.Option(
        "--harness-chat/--harness-raw", help="with --harness: apply the run's chat template to prompts")] = True,
) -> None:
    """Score a trained run or any model on held-out data (with the run's context); writes eval.json.

    With --harness TASKS, lm-eval's HF backend scores the run's model (base + adapter, or its full weights)
    on lm-eval tasks, with the run's chat template applied, and writes eval_harness.json.
    """
    from ftatlas.evaluate.api import evaluate_target

    if harness is not None:
        clash = [f for f, v in (("--data", data), ("--metrics", metrics), ("--context", context), ("--ctx", ctx),
                                ("--max-examples", max_examples)) if v]
        if clash:
            _fail(ValueError(f"--harness runs lm-eval tasks; {', '.join(clash)} do not apply (use --limit)"))
        _eval_harness(target, harness, harness_include, limit, num_fewshot, batch_size, harness_chat, output)
        return
    from ftatlas.recipe import parse_overrides

    decode = _decode(max_new_tokens, beams, temperature, top_k, top_p, repetition_penalty, sample, seed)
    try:
        result, path = evaluate_target(target, data, metrics.split(",") if metrics else None, decode,
                                       max_examples=max_examples, batch_size=batch_size, out=output,
                                       context=context, context_options=ctx,
                                       eval_options=parse_overrides(eval_set or []) or None)
    except USER_ERRORS as e:
        _fail(e)
    shown = ("metrics", "n", "context", "prompt_tokens_per_request")
    out.print(json.dumps({k: result[k] for k in shown if k in result}, indent=2))
    out.print(f"wrote {path}")


def _eval_harness(target: str, tasks: str, include: list[Path] | None, limit: float | None, num_fewshot: int | None,
                  batch_size: int, chat_template: bool, output: Path | None) -> None:
    from ftatlas.evaluate.harness import HarnessError, run_harness, summary_table

    try:
        result, path = run_harness(target, tasks.split(","), include=include, limit=limit, num_fewshot=num_fewshot,
                                   batch_size=batch_size, chat_template=chat_template, out=output)
    except (*USER_ERRORS, HarnessError) as e:
        _fail(e)
    out.print(summary_table(result), highlight=False, markup=False)
    for note in result["ftatlas"]["notes"]:
        out.print(f"note: {note}", highlight=False)
    out.print(f"wrote {path}")


@app.command()
def chat(
    target: Annotated[str, typer.Argument(help="run directory, or a model (dir, .gguf, alias, hub id)")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="answer one prompt and exit")] = None,
    system: Annotated[str | None, typer.Option(help="system prompt")] = None,
    max_new_tokens: MaxNew = 256, beams: Beams = 1, temperature: Temp = 0.7, top_k: TopK = 50,
    top_p: TopP = 0.9, repetition_penalty: RepPen = 1.1, sample: Sample = False, seed: Seed = 0,
    context: ContextName = None, ctx: ContextSet = None,
    sources: Annotated[bool, typer.Option("--sources", help="print the passages/examples the context added")]
    = False,
) -> None:
    """Talk to a trained run (same chat template and context it trained with). Interactive unless --prompt."""
    from ftatlas.chat import ChatSession

    decode = _decode(max_new_tokens, beams, temperature, top_k, top_p, repetition_penalty, sample, seed)
    try:
        session = ChatSession.open(target, decode, system, context, ctx)
    except USER_ERRORS as e:
        _fail(e)

    def say(text: str, prefix: str = "") -> None:
        out.print(f"{prefix}{session.reply(text)}", highlight=False)
        if sources and session.last_info:
            err.print(f"  context: {session.last_info}", highlight=False)

    if prompt is not None:
        say(prompt)
        return
    err.print("chat: empty line or Ctrl-D to quit, /reset to clear history")
    for line in sys.stdin if not sys.stdin.isatty() else iter(lambda: input("you> "), None):
        line = line.strip()
        if not line:
            break
        if line == "/reset":
            session.reset()
            continue
        say(line, "assistant> ")


@app.command()
def merge(
    run_dir: Annotated[str, typer.Argument(help="run directory with an adapter/")],
    output: Annotated[Path | None, typer.Option("--out", help="where to write the merged model (default RUN/merged)")]
    = None,
) -> None:
    """Fold the adapter into the base, re-score it against the adapter, save a plain transformers model."""
    from ftatlas.export.merge import merge_run

    try:
        r = merge_run(run_dir, output)
    except USER_ERRORS as e:
        _fail(e)
    verdict = "OK" if r.within_tolerance else "MISMATCH"
    out.print(f"merged model: {r.out_dir}\nmax |logit diff| vs adapter on {r.prompts_checked} held-out prompts: "
              f"{r.max_abs_logit_diff:.2e} with logits up to {r.max_abs_logit:.1f} ({verdict})", highlight=False)
    if r.vs_trained_4bit is not None:
        out.print(f"vs the 4-bit model it trained on: {r.vs_trained_4bit:.2e} (quantization error)", highlight=False)
    if not r.within_tolerance:
        raise typer.Exit(1)


@data_app.command("inspect")
def data_inspect(
    file: Annotated[str, typer.Argument(help="data file (.jsonl, .json, .txt)")],
    model: Annotated[str, typer.Option(help="tokenizer source (alias, dir, .gguf, hub id)")] = "smollm2-135m",
    format: Annotated[str, typer.Option(help="auto, alpaca, sharegpt, messages, text")] = "auto",
    max_length: Annotated[int, typer.Option(help="truncation length to report against")] = 1024,
    train_on: Annotated[str, typer.Option(help="assistant, all, last_assistant")] = "assistant",
    template: Annotated[str | None, typer.Option(help="chat template override")] = None,
) -> None:
    """Row count, token-length percentiles, turns, loss-token share and the first rendered example."""
    from ftatlas.data.inspect import inspect_file
    from ftatlas.models.loading import load_tokenizer, resolve_source

    try:
        tok = load_tokenizer(resolve_source(model), template)
        report = inspect_file(file, tok, format, max_length, train_on)  # type: ignore[arg-type]
    except USER_ERRORS as e:
        _fail(e)
    for line in report.lines():
        out.print(line, highlight=False, markup=False)


@data_app.command("validate")
def data_validate(
    file: Annotated[str, typer.Argument(help="data file")],
    format: Annotated[str, typer.Option(help="auto, alpaca, sharegpt, messages, text, trl, kto")] = "auto",
    kind: Annotated[str, typer.Option(help="rows as an objective reads them: conversations, preference, "
                                           "unpaired, prompts, text")] = "conversations",
) -> None:
    """Read every row; report the first problem with file, line and field."""
    from ftatlas.data.splits import read_rows

    try:
        rows = read_rows(file, format, kind)
    except USER_ERRORS as e:
        _fail(e)
    out.print(f"{file}: {len(rows)} rows OK")


@data_app.command("rejection-sample")
def data_rejection_sample(
    target: Annotated[str, typer.Argument(help="run directory, or a model (dir, .gguf, alias, hub id)")],
    data: Annotated[str, typer.Argument(help="prompt file (.jsonl/.json) or builtin:<name>, e.g. builtin:ages")],
    reward: Annotated[list[str] | None, typer.Option(
        "--reward", help="reward: built-in name, module:function, file.py:function or JSON {name, ...}; repeatable")]
    = None,
    reward_model: Annotated[str | None, typer.Option(help="score with a trained reward model (run dir)")] = None,
    n: Annotated[int, typer.Option("--n", help="samples per prompt")] = 4,
    output: Annotated[Path, typer.Option("--out", help="folder for sft.jsonl and pairs.jsonl")] = Path("rejection"),
    max_prompts: Annotated[int | None, typer.Option(help="use only the first N prompts")] = None,
    min_score: Annotated[float | None, typer.Option(help="keep a best answer for SFT only at this score or above")]
    = None,
    batch_size: Annotated[int, typer.Option(help="sequences generated together")] = 16,
    max_new_tokens: MaxNew = 64, temperature: Temp = 1.0, top_k: TopK = 50, top_p: TopP = 1.0, seed: Seed = 0,
) -> None:
    """Sample N answers per prompt, score them, write the best as SFT data and best/worst as preference pairs."""
    from ftatlas.data.rejection import parse_reward, rejection_sample
    from ftatlas.rewards import RewardError, RewardSpec

    decode = _decode(max_new_tokens, 1, temperature, top_k, top_p, 1.0, True, seed)
    try:
        specs = [parse_reward(r) for r in reward or []]
        if reward_model:
            specs.append(RewardSpec(name="reward_model", path=reward_model))
        result = rejection_sample(target, data, specs, output, n=n, decode=decode, batch_size=batch_size,
                                  max_prompts=max_prompts, min_score=min_score)
    except (*USER_ERRORS, RewardError) as e:
        _fail(e)
    out.print(result.summary(), highlight=False)


@methods_app.command("list")
def methods_list() -> None:
    """Every registered method with its parameters (generated from the registry)."""
    from ftatlas.methods import METHODS

    _print_registry(METHODS)


@context_app.command("list")
def context_list() -> None:
    """Every context mode with its parameters (generated from the registry)."""
    from ftatlas.context import CONTEXTS

    _print_registry(CONTEXTS)


def _print_registry(registry) -> None:
    for name in registry:
        m = registry.get(name)
        fields = ", ".join(f"{k}=<required>" if f.is_required() else f"{k}={f.get_default(call_default_factory=True)!r}"
                           for k, f in m.Params.model_fields.items())
        out.print(f"[bold]{name}[/]: {m.summary}" + (f"\n    {fields}" if fields else ""), highlight=False)


@methods_app.command("memory")
def methods_memory(
    model: Annotated[str, typer.Option(help="model (alias, dir, .gguf, hub id); only its config is read")]
    = "smollm2-135m",
    optimizer: Annotated[str, typer.Option(help="adamw, adamw_8bit or sgd")] = "adamw",
) -> None:
    """Weights / grads / optimizer memory of every method with default params (activations excluded)."""
    from transformers import AutoConfig

    from ftatlas.methods import METHODS
    from ftatlas.methods.memory import estimate_memory
    from ftatlas.models.loading import resolve_source
    from ftatlas.report import rich_table

    try:
        config = AutoConfig.from_pretrained(resolve_source(model))
        rows = []
        for name in METHODS:
            try:
                e = estimate_memory(config, name, optimizer=optimizer)
            except ValueError as exc:  # e.g. bitfit on a bias-free model without add_bias
                reason = str(exc).split(";")[0].removeprefix(f"method {name}: ")
                rows.append({"method": name, "trainable params": "-", "frozen": "-", "trainable": "-",
                             "grads": "-", "optimizer": "-", "total": f"n/a ({reason})"})
                continue
            g = e.as_gib()
            rows.append({"method": name, "trainable params": f"{e.trainable_params:,}",
                         **{k: f"{g[v]:.3f}" for k, v in (("frozen", "frozen"), ("trainable", "trainable"),
                                                          ("grads", "grad"), ("optimizer", "optimizer"))},
                         "total": f"{g['total']:.3f}"})
    except USER_ERRORS as e:
        _fail(e)
    out.print(rich_table(rows, f"{model}: memory in GiB (weights + grads + {optimizer} states; no activations)"))


@app.command()
def advise(
    model: Annotated[str, typer.Option(help="model (alias, dir, .gguf, hub id); only its config is read")]
    = "smollm2-135m",
    data: Annotated[str, typer.Option(help="training file or built-in dataset name")] = "contacts",
    goal: Annotated[str, typer.Option(help="task, style, knowledge, chat, alignment or reasoning")] = "task",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto (this machine)")] = "auto",
    memory: Annotated[str | None, typer.Option(help="memory budget, e.g. 24GB (default: this machine's)")] = None,
    time: Annotated[str | None, typer.Option("--time", help="time budget, e.g. 2h")] = None,
    batch_size: Annotated[int, typer.Option(help="examples per micro-batch")] = 8,
    max_length: Annotated[int, typer.Option(help="tokens per example (longer rows are truncated)")] = 1024,
    gradient_checkpointing: Annotated[bool | None, typer.Option(
        help="estimate with/without gradient checkpointing (default: ftatlas' default, on except prefix)")] = None,
    shots: Annotated[int, typer.Option(help="k of the few-shot comparison")] = 3,
    measure: Annotated[bool, typer.Option(help="run 3 real steps of every method that fits")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text or mermaid (the map with the path)")] = "text",
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the ready recipes")] = Path("advice"),
) -> None:
    """The seeds' decision map walked with your facts, memory/time per method, and ready recipes."""
    from ftatlas.advise.advisor import advise as run_advice
    from ftatlas.advise.advisor import parse_duration, parse_size
    from ftatlas.advise.decision_map import mermaid
    from ftatlas.advise.recipes import plan, write_recipes
    from ftatlas.advise.render import measure_candidates, recommendation_lines, summary_lines, table_rows
    from ftatlas.report import rich_table

    try:
        if fmt not in ("text", "mermaid"):
            raise ValueError(f"--format {fmt!r}: text or mermaid")
        a = run_advice(model, data, goal, device, parse_size(memory) if memory else None,
                       parse_duration(time) if time else None, batch_size, max_length, gradient_checkpointing, shots)
        if fmt == "mermaid":
            from ftatlas.advise.decision_map import mermaid

            print(mermaid(a.walk))
            return
        if measure:
            measure_candidates(a, data)
        index = "builtin:knowledge" if data == "knowledge" else str(out_dir / "index")
        length = max_length if goal == "knowledge" else min(max_length, max(64, a.data.shape.max))  # + passages
        written = write_recipes(out_dir, plan(goal, model, data, a.method, {}, batch_size, length, index, device))
    except USER_ERRORS as e:
        _fail(e)
    for line in summary_lines(a):
        out.print(line, highlight=False)
    out.print("\n[bold]decision map[/] (seeds section 3; `--format mermaid` draws it)")
    for line in a.walk.lines():
        out.print(f"  {line}", highlight=False)
    out.print(rich_table(table_rows(a), f"every method at batch {batch_size} (peak = weights + grads + optimizer + "
                         "activations; GB = 1e9 bytes)", left=("method", "fits")))
    for line in recommendation_lines(a):
        out.print(line, highlight=False)
    for n in a.notes:
        out.print(f"[bold]note[/] {n}", highlight=False)
    out.print("[bold]recipes[/] (validated; run in this order)")
    for w in written:
        out.print(f"  {w.command}    # {w.purpose}", highlight=False)
    if goal == "knowledge" and data != "knowledge":
        out.print(f"  first build the index: ftatlas rag ingest YOUR_DOCS --index {out_dir / 'index'}", highlight=False)


@config_app.command("validate")
def config_validate(
    files: Annotated[list[Path], typer.Argument(help="recipe YAML files")],
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override key=value")] = None,
) -> None:
    """Validate recipes without loading any model."""
    from ftatlas.recipe import load_recipe

    for f in files:
        try:
            load_recipe(f, overrides)
        except USER_ERRORS as e:
            _fail(e)
        out.print(f"{f}: OK")


@config_app.command("schema")
def config_schema() -> None:
    """The recipe's JSON schema (every field with its description)."""
    from ftatlas.recipe import Recipe

    out.print_json(json.dumps(Recipe.model_json_schema()))


@app.command()
def arena(
    arena_file: Annotated[Path, typer.Argument(help="arena YAML: shared model/data/train/eval and a list of cells")],
    only: Annotated[str | None, typer.Option(help="comma-separated cell names to (re)run; others are reused")]
    = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="run cells in parallel as Ray tasks: a cluster address (auto, host:6379, ray://host:10001) "
        "or 'local' for a Ray instance on this machine")] = None,
    cell_cpus: Annotated[float, typer.Option(help="with --ray: CPUs each cell reserves")] = 1.0,
    cell_gpus: Annotated[float, typer.Option(help="with --ray: GPUs each cell reserves")] = 0.0,
) -> None:
    """Run every cell side by side (resumable) and write table.md, table.csv and report.html.

    Cells run one after another on this machine (each in its own process); finished cells with an
    unchanged recipe are skipped, failed ones are recorded and the arena goes on. With --ray, the same
    train command of each cell runs as a Ray task (tested here with a local Ray instance only); every
    Ray node needs ftatlas and must see the arena folder, model and data at the same paths.
    """
    from ftatlas.arena import load_arena, run_arena
    from ftatlas.arena.report import table_rows
    from ftatlas.arena.runner import run_locally
    from ftatlas.report import rich_table

    try:
        spec = load_arena(arena_file)
        if ray:
            from ftatlas.arena.ray_runner import ray_executor

            executor = ray_executor(ray, cell_cpus, cell_gpus)
        else:
            executor = run_locally
        root, rows = run_arena(spec, only.split(",") if only else None, log=lambda m: err.print(m, highlight=False),
                               executor=executor)
    except USER_ERRORS as e:
        _fail(e)
    table = [{k: v for k, v in r.items() if k != "objective"} for r in table_rows(rows)]
    out.print(rich_table(table, f"arena {spec.name}", left=("cell", "method", "context", "verdict")))
    out.print(f"wrote {root}/table.md, table.csv, report.html")


IndexOpt = Annotated[Path, typer.Option("--index", help="index folder (created on first ingest)")]


@rag_app.command("ingest")
def rag_ingest(
    docs: Annotated[list[str], typer.Argument(help="files or folders (.txt .md .jsonl .pdf), or builtin:knowledge")],
    index: IndexOpt,
    embedder: Annotated[str, typer.Option(help="sentence-transformers model name or path")] = "all-MiniLM-L6-v2",
    chunk_size: Annotated[int, typer.Option(help="max embedder tokens per chunk")] = 200,
    overlap: Annotated[int, typer.Option(help="tokens shared by consecutive chunks (whole sentences)")] = 40,
    text_field: Annotated[str, typer.Option(help="field holding the text in .jsonl rows")] = "text",
    prune: Annotated[bool, typer.Option(help="drop files that vanished from an ingested folder")] = True,
) -> None:
    """Chunk, embed and index documents; unchanged files are skipped, changed ones re-embedded."""
    from ftatlas.context.retrieval.ingest import ingest

    try:
        report = ingest(docs, index, embedder=embedder, chunk_size=chunk_size, overlap=overlap,
                        text_field=text_field, prune=prune, progress=sys.stderr.isatty())
    except USER_ERRORS as e:  # DocumentError, EmbedderError, RagIndexError are ValueErrors
        _fail(e)
    for msg in report.failed.values():
        err.print(f"[yellow]skipped[/] {msg}", highlight=False)
    out.print(f"{index}: {report.summary()}", highlight=False)


@rag_app.command("query")
def rag_query(
    index: Annotated[Path, typer.Argument(help="index folder")],
    question: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int, typer.Option("-k", help="passages to show")] = 4,
    retrieval: Annotated[str, typer.Option(help="hybrid, dense or bm25")] = "hybrid",
    width: Annotated[int, typer.Option(help="characters of each passage to show (0 = all)")] = 160,
) -> None:
    """Show the top-k passages for a question, with scores and each retriever's rank."""
    from ftatlas.context.retrieval.retrieve import Retriever
    from ftatlas.report import rich_table

    try:
        retriever = Retriever(index)
        hits = retriever.search(question, k=k, mode=retrieval)  # type: ignore[arg-type]
    except USER_ERRORS as e:
        _fail(e)
    rows = [{"#": str(i), "source": h.chunk.cite, "score": f"{h.score:.4f}",
             "dense rank": str(h.ranks.get("dense", "-")), "bm25 rank": str(h.ranks.get("bm25", "-")),
             "passage": " ".join(h.chunk.text.split())[: width or None]} for i, h in enumerate(hits, 1)]
    out.print(rich_table(rows, f"{retrieval} retrieval: {question}", left=("source", "passage")))


@rag_app.command("eval")
def rag_eval(
    index: Annotated[Path, typer.Argument(help="index folder")],
    data: Annotated[str, typer.Option(help="builtin:knowledge or a jsonl of {question, evidence|answer|source}")]
    = "builtin:knowledge",
    k: Annotated[int, typer.Option("-k", help="cut-off for recall@k")] = 4,
) -> None:
    """Retrieval quality: recall@1, recall@k and MRR@10 for dense, BM25 and hybrid, side by side."""
    from ftatlas.context.retrieval.evaluation import evaluate_retrieval, load_probes
    from ftatlas.report import rich_table

    try:
        probes = load_probes(data)
        results = evaluate_retrieval(index, probes, k=k)
    except USER_ERRORS as e:
        _fail(e)
    rows = [{"retrieval": mode, **{m: f"{100 * v:.1f}" for m, v in r.items()}} for mode, r in results.items()]
    out.print(rich_table(rows, f"{index} on {data} (n={len(probes)}, %)", left=("retrieval",)))


@rag_app.command("info")
def rag_info(index: Annotated[Path, typer.Argument(help="index folder")]) -> None:
    """What an index holds: files, chunks, embedder, chunking, and files that failed to ingest."""
    from ftatlas.context.retrieval.store import IndexStore

    try:
        store = IndexStore(index)
    except USER_ERRORS as e:
        _fail(e)
    out.print_json(json.dumps(store.describe()))
    for msg in store.file_errors().values():
        err.print(f"[yellow]failed[/] {msg}", highlight=False)


if __name__ == "__main__":
    app(prog_name="ftatlas")
