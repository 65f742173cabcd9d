"""Commands that score or talk to a model: eval (with --harness), chat."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ftatlas.cli.common import (
    USER_ERRORS,
    Beams,
    ContextName,
    ContextSet,
    MaxNew,
    RepPen,
    Sample,
    Seed,
    Temp,
    TopK,
    TopP,
    app,
    decode_spec,
    err,
    fail,
    out,
)


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
    from ftatlas.evaluate.target import evaluate_target

    if harness is not None:
        clash = [f for f, v in (("--data", data), ("--metrics", metrics), ("--context", context), ("--ctx", ctx),
                                ("--max-examples", max_examples)) if v]
        if clash:
            fail(ValueError(f"--harness runs lm-eval tasks; {', '.join(clash)} do not apply (use --limit)"))
        _eval_harness(target, harness, harness_include, limit, num_fewshot, batch_size, harness_chat, output)
        return
    from ftatlas.recipe import parse_overrides

    spec = decode_spec(max_new_tokens, beams, temperature, top_k, top_p, repetition_penalty, sample, seed)
    try:
        result, path = evaluate_target(target, data, metrics.split(",") if metrics else None, spec,
                                       max_examples=max_examples, batch_size=batch_size, out=output,
                                       context=context, context_options=ctx,
                                       eval_options=parse_overrides(eval_set or []) or None)
    except USER_ERRORS as e:
        fail(e)
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
        fail(e)
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

    spec = decode_spec(max_new_tokens, beams, temperature, top_k, top_p, repetition_penalty, sample, seed)
    try:
        session = ChatSession.open(target, spec, system, context, ctx)
    except USER_ERRORS as e:
        fail(e)

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
