"""Commands that train: quickstart, train, arena."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftatlas.cli.common import USER_ERRORS, Overrides, app, err, fail, out


@app.command()
def quickstart(overrides: Overrides = None) -> None:
    """Base vs LoRA SFT on the built-in task with the embedded SmolLM2-135M: a measured before/after."""
    from ftatlas.pipeline import train
    from ftatlas.quickstart import quickstart_recipe
    from ftatlas.run_report import comparison_rows, rich_table

    try:
        recipe = quickstart_recipe(["output.overwrite=true", *(overrides or [])])
        session = train(recipe, eval_before=True)
    except USER_ERRORS as e:
        fail(e)
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
    from ftatlas.resolve import load_recipe
    from ftatlas.run_report import comparison_rows, rich_table

    try:
        recipe = load_recipe(recipe_file, overrides)
        session = train(recipe, resume=resume, eval_before=eval_before)
    except USER_ERRORS as e:
        fail(e)
    if "after" not in session.results:  # a torchrun / accelerate launch process other than rank 0
        return
    out.print(rich_table(comparison_rows(session), "held-out metrics (%)"))
    out.print(f"run directory: {session.run.path}")


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
    from ftatlas.run_report import rich_table

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
        fail(e)
    table = [{k: v for k, v in r.items() if k != "objective"} for r in table_rows(rows)]
    out.print(rich_table(table, f"arena {spec.name}", left=("cell", "method", "context", "verdict")))
    out.print(f"wrote {root}/table.md, table.csv, report.html")
