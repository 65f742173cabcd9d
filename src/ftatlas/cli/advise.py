"""``ftatlas advise``: the decision map walked with the user's facts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftatlas.cli.common import USER_ERRORS, app, fail, out


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
    from ftatlas.advise.recipes import write_advice
    from ftatlas.advise.render import measure_candidates, recommendation_lines, summary_lines, table_rows
    from ftatlas.run_report import rich_table

    try:
        if fmt not in ("text", "mermaid"):
            raise ValueError(f"--format {fmt!r}: text or mermaid")
        a = run_advice(model, data, goal, device, parse_size(memory) if memory else None,
                       parse_duration(time) if time else None, batch_size, max_length, gradient_checkpointing, shots)
        if fmt == "mermaid":
            print(mermaid(a.walk))
            return
        if measure:
            measure_candidates(a, data)
        written = write_advice(a, out_dir, model, data, goal, batch_size, max_length, device)
    except USER_ERRORS as e:
        fail(e)
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
