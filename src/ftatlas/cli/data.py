"""``ftatlas data ...``: inspect, validate, rejection-sample."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftatlas.cli.common import USER_ERRORS, MaxNew, Seed, Temp, TopK, TopP, decode_spec, fail, group, out

data_app = group("data", "Inspect, validate and prepare data files.")


@data_app.command("inspect")
def data_inspect(
    file: Annotated[str, typer.Argument(help="data file (.jsonl, .json, .txt)")],
    model: Annotated[str, typer.Option(help="tokenizer source (alias, dir, .gguf, hub id)")] = "smollm2-135m",
    format: Annotated[str, typer.Option(help="auto, alpaca, sharegpt, messages, text")] = "auto",
    max_length: Annotated[int, typer.Option(help="truncation length to report against")] = 1024,
    train_on: Annotated[str, typer.Option(help="assistant, all, last_assistant")] = "assistant",
    template: Annotated[str | None, typer.Option(help="chat template override")] = None,
    eval: Annotated[str | None, typer.Option("--eval", help="held-out file to check for train/eval overlap")]
    = None,
) -> None:
    """Row count, token-length percentiles, turns, loss-token share, duplicates, over-long rows, train/eval
    overlap (with --eval) and the first rendered example."""
    from ftatlas.data.inspect import inspect_file
    from ftatlas.models.loading import load_tokenizer, resolve_source

    try:
        tok = load_tokenizer(resolve_source(model), template)
        report = inspect_file(file, tok, format, max_length, train_on, eval)  # type: ignore[arg-type]
    except USER_ERRORS as e:
        fail(e)
    for line in report.lines():
        out.print(line, highlight=False, markup=False)


@data_app.command("validate")
def data_validate(
    file: Annotated[str, typer.Argument(help="data file")],
    format: Annotated[str, typer.Option(help="auto, alpaca, sharegpt, messages, text, trl, kto")] = "auto",
    kind: Annotated[str, typer.Option(help="rows as an objective reads them: conversations, preference, "
                                           "unpaired, prompts, text")] = "conversations",
    eval: Annotated[str | None, typer.Option("--eval", help="held-out file to check for train/eval overlap")]
    = None,
) -> None:
    """Read every row; report the first problem with file, line and field; then duplicates and (with --eval)
    train/eval overlap."""
    from ftatlas.data import checks
    from ftatlas.data.splits import read_rows

    try:
        rows = read_rows(file, format, kind)
        found = checks.duplicates(rows).lines
        if eval:
            found += checks.overlap(rows, read_rows(eval, format, kind)).lines
    except USER_ERRORS as e:
        fail(e)
    out.print(f"{file}: {len(rows)} rows OK")
    for line in found:
        out.print(line, highlight=False, markup=False)


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

    spec = decode_spec(max_new_tokens, 1, temperature, top_k, top_p, 1.0, True, seed)
    try:
        specs = [parse_reward(r) for r in reward or []]
        if reward_model:
            specs.append(RewardSpec(name="reward_model", path=reward_model))
        result = rejection_sample(target, data, specs, output, n=n, decode=spec, batch_size=batch_size,
                                  max_prompts=max_prompts, min_score=min_score)
    except (*USER_ERRORS, RewardError) as e:
        fail(e)
    out.print(result.summary(), highlight=False)
