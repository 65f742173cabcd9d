"""Commands that turn a run into something else to ship: merge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftatlas.cli.common import USER_ERRORS, app, fail, out


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
        fail(e)
    verdict = "OK" if r.within_tolerance else "MISMATCH"
    out.print(f"merged model: {r.out_dir}\nmax |logit diff| vs adapter on {r.prompts_checked} held-out prompts: "
              f"{r.max_abs_logit_diff:.2e} with logits up to {r.max_abs_logit:.1f} ({verdict})", highlight=False)
    if r.vs_trained_4bit is not None:
        out.print(f"vs the 4-bit model it trained on: {r.vs_trained_4bit:.2e} (quantization error)", highlight=False)
    if not r.within_tolerance:
        raise typer.Exit(1)
