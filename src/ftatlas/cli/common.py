"""What every command group shares: the app, the consoles, user-error handling and shared options."""

from __future__ import annotations

import sys
import warnings
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
out = Console(width=None if sys.stdout.isatty() else 140)  # tables stay readable when piped to a file
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
# Library deprecation chatter (transformers/peft renames) is not actionable for a user of this CLI.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch)\.")

# Errors a user can fix: printed as one clear message, exit code 2, no traceback.
USER_ERRORS = (RecipeError, DataError, ModelLoadError, RunDirError, UnknownNameError, FileNotFoundError, ValueError)

Overrides = Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. train.lr=1e-4 method.r=8")]


def fail(e: Exception) -> None:
    # soft_wrap: no line breaks inserted into paths (the terminal wraps); e.g. "ftatlas[ray]" is not markup
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def decode_spec(max_new_tokens: int, beams: int, temperature: float, top_k: int, top_p: float,
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


def group(name: str, help: str) -> typer.Typer:
    """A sub-command group ``ftatlas NAME ...``; modules that add verbs to it call this once with the same name."""
    for info in app.registered_groups:
        if info.name == name:
            return info.typer_instance
    sub = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub
