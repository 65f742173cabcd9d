"""Commands that turn a run into something else to ship: merge, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftatlas.cli.common import USER_ERRORS, app, fail, out
from ftatlas.export.report import export_table, logit_summary


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


@app.command("export")
def export_cmd(
    run_dir: Annotated[str, typer.Argument(help="run directory to export")],
    to: Annotated[str, typer.Option("--to", help="format: safetensors, gguf, bnb-4bit, bnb-8bit, int8, gptq, awq")],
    quant: Annotated[str | None, typer.Option(
        "--quant", help="safetensors: bf16|f16|f32; gguf: f16|bf16|q8_0|q4_k_m|q5_k_m|...; bnb-4bit: nf4|fp4; "
        "gptq: w4a16|w8a16 (default per format)")]
    = None,
    output: Annotated[Path | None, typer.Option("--out", help="output folder (default RUN/exports/FORMAT-QUANT)")]
    = None,
    max_examples: Annotated[int | None, typer.Option(
        "--max-examples", help="re-score on the first N held-out rows (default: the run's eval.max_examples)")]
    = None,
) -> None:
    """Write the run in another format, load it in its real consumer and re-score it next to the run."""
    from ftatlas.export.api import export_run

    try:
        report = export_run(run_dir, to, quant, output, max_examples=max_examples)
    except USER_ERRORS as e:
        fail(e)
    out.print(export_table(report))
    out.print(logit_summary(report), highlight=False, soft_wrap=True)
    cost = report["consumer_cost"]
    where = "CUDA max allocated" if cost["memory_kind"] == "cuda" else "RSS added"
    out.print(f"in {report['consumer']}: loaded in {cost['load_seconds']:.1f} s, scored in "
              f"{cost['score_seconds']:.1f} s, peak {where} {cost['peak_bytes'] / 2**20:.0f} MiB", highlight=False)
    for name, why in report["drops"].items():
        out.print(f"[bold red]drop:[/] {name} {why}", highlight=False)
    out.print(f"written: {report['dir']} (export.json beside it)", highlight=False)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("merge-models")
def merge_models_cmd(
    spec_file: Annotated[Path, typer.Argument(help="merge spec YAML (method, base, models, out; see docs/export.md)")],
) -> None:
    """Merge runs or models with mergekit (linear, task arithmetic, SLERP, TIES, DARE) and re-score the merge."""
    from ftatlas.export.merge_models import load_spec, merge_models

    try:
        report = merge_models(load_spec(spec_file))
    except USER_ERRORS as e:
        fail(e)
    merged = report["merged"]
    for row in [*report["inputs"], {"run": f"merged ({report['method']})", **merged}]:
        cells = ", ".join(f"{k} {v:.3f}" + (f" [{row['ci95'][k][0]:.3f}, {row['ci95'][k][1]:.3f}]"
                                            if k in (row.get("ci95") or {}) else "")
                          for k, v in (row.get("metrics") or {}).items())
        out.print(f"{row['run']}: {cells}", highlight=False, soft_wrap=True)
    out.print(f"merged model: {report['out']} (merge.json beside it)", highlight=False)
