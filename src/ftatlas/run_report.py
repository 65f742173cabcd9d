"""report.md and the before/after table printed by train and quickstart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from ftatlas import allocator

if TYPE_CHECKING:
    from ftatlas.pipeline import Session


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def metric_text(value: float | None, own_scale: bool) -> str:
    """A fraction as %, a metric on its own scale (eval.json ``scales``: perplexity, 1-10 judge) as it is, and a
    metric no example could be scored on (e.g. every judge reply unreadable) as -."""
    if value is None:
        return "-"
    return f"{value:.2f}" if own_scale else _pct(value)


def _metric(ev: dict, name: str) -> str:
    return metric_text(ev["metrics"].get(name), name in ev.get("scales", {}))


def _gib(b: int | None) -> str:
    return f"{b / 2**30:.2f} GiB" if b else "-"


def comparison_rows(session: Session) -> list[dict[str, str]]:
    """One row per evaluated model (base, trained), with the columns the quickstart promises."""
    rows = []
    fit = session.results.get("fit")
    metric_names = session.metrics
    ctx = session.recipe.context.name
    ctx_col = {"context": ctx} if ctx != "zero_shot" or session.recipe.context.params() else {}

    def evaluated(label: str, ev: dict) -> dict[str, str]:
        return {"model": label, **ctx_col, **{m: _metric(ev, m) for m in metric_names},
                "prompt tokens": f"{ev['prompt_tokens_per_request']:.0f}" if "prompt_tokens_per_request" in ev else "-"}

    untrained = {"trainable params": "0", "train time": "-", "train tokens/s": "-"}
    if "before" in session.results:
        ev = session.results["before"]
        rows.append({**evaluated("base (no training)", ev), **untrained,
                     "peak memory": _gib(ev["peak_memory_bytes"]) + " (eval)"})
    if fit is not None:
        rows.append({
            **evaluated(f"{session.recipe.method.name} {session.recipe.objective.name}", session.results["after"]),
            "trainable params": f"{fit.params.trainable:,} ({fit.params.share:.2%})",
            "train time": f"{fit.stats.seconds:.0f} s",
            "train tokens/s": f"{fit.tokens_per_s:,.0f}",
            "peak memory": _gib(fit.stats.peak_bytes) + (" (train)" if fit.stats.kind == "rss" else " (cuda)"),
        })
    elif "after" in session.results:  # method none: the base model with its context, nothing trained
        ev = session.results["after"]
        rows.append({**evaluated("base (no training)", ev), **untrained,
                     "peak memory": _gib(ev["peak_memory_bytes"]) + " (eval)"})
    return rows


def rich_table(rows: list[dict[str, str]], title: str, left: tuple[str, ...] = ("model",)) -> Table:
    """Numbers right-aligned; the ``left`` columns (names, text) left-aligned."""
    table = Table(title=title)
    for col in rows[0] if rows else []:
        table.add_column(col, justify="left" if col in left else "right")
    for r in rows:
        table.add_row(*r.values())
    return table


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def run_summary(session: Session) -> dict[str, Any]:
    """The run's numbers in one machine-readable file (summary.json): what the arena tabulates."""
    fit = session.results.get("fit")
    ev = session.results["after"]
    out: dict[str, Any] = {"method": session.recipe.method.name, "objective": session.recipe.objective.name,
                           "context": session.recipe.context.name, "device": session.device,
                           "eval_peak_bytes": ev.get("peak_memory_bytes"), "trainable_params": 0,
                           "heap_allocator": allocator.active() if session.device == "cpu" else None}
    if fit is not None:
        out |= {"trainable_params": fit.params.trainable, "total_params": fit.params.total,
                "train_seconds": round(fit.stats.seconds, 2), "train_peak_bytes": fit.stats.peak_bytes,
                "memory_kind": fit.stats.kind, "train_tokens": fit.tokens, "tokens_per_s": round(fit.tokens_per_s, 1),
                "train_loss": fit.train_loss}
    plan = session.results.get("plan")
    if plan is not None:
        kept = plan.get("kept") or {}
        out |= {"lr": plan["lr"], "gradient_checkpointing": plan["checkpointing"]["on"],
                "kept_step": kept.get("step"), "stopped_early": kept.get("stopped_early", False),
                "planned_steps": kept.get("planned_steps"), "best_eval_loss": kept.get("best_eval_loss"),
                "eval_loss_curve": eval_loss_curve(session.run.read_metrics())}
    return out


def eval_loss_curve(metrics: list[dict]) -> list[list[float]]:
    """[[step, eval_loss], ...] of the held-out passes during training (not the final pass over the kept weights,
    which follows the last one at the same step)."""
    points = [[r["step"], round(r["eval_loss"], 5)] for r in metrics if "eval_loss" in r]
    return points[:-1] if len(points) > 1 and points[-1][0] == points[-2][0] else points


def plan_lines(plan: dict, curve: list[list[float]]) -> list[str]:
    """report.md's training-plan section: the chosen budget, rate and checkpointing with reasons, the eval-loss
    curve and the kept step."""
    kept = plan.get("kept") or {}
    lines = ["## Training plan", "", f"- learning rate: {plan['lr']:g} ({plan['lr_source']})",
             f"- gradient checkpointing: {plan['checkpointing']['reason']}"]
    if plan.get("budget"):
        lines.append(f"- budget: {plan['budget']['reason']}")
    if kept.get("last_step") is not None:
        how = f"stopped early at step {kept['last_step']} of {kept['planned_steps']}" if kept["stopped_early"] \
            else f"ran all {kept['planned_steps']} steps"
        lines.append(f"- {how}; kept step {kept['step']} (held-out loss {kept['best_eval_loss']:.4f})")
    else:
        lines.append(f"- kept step {kept.get('step')} (the last)")
    if curve:
        lines += ["", "| step | held-out loss |", "|---|---|"]
        lines += [f"| {int(st)}{' (kept)' if st == kept.get('step') else ''} | {loss:.4f} |" for st, loss in curve]
    return lines + [""]


def write_report(session: Session) -> None:
    session.run.write_json("summary.json", run_summary(session))
    r = session.recipe
    rows = comparison_rows(session)
    fit = session.results.get("fit")
    parts = [
        f"# Run `{session.run.path.name}`",
        "",
        f"- model: `{r.model.name}` ({session.loaded.source}) on {session.device}, {session.precision.label}"
        + (f", heap allocator {allocator.active()}" if session.device == "cpu" else ""),  # CPU memory depends on it
        f"- method: `{r.method.name}` {r.method.params() or ''}; objective: `{r.objective.name}`; "
        f"context: `{r.context.name}` {r.context.params() or ''}",
        f"- data: {session.splits.note}",
    ]
    from ftatlas.objectives import OBJECTIVES

    experimental = OBJECTIVES.get(r.objective.name).experimental
    if experimental:
        parts.append(f"- **experimental** objective `{r.objective.name}`: {experimental}")
    if "quantization" in session.results:
        parts.append(f"- 4-bit base: {session.results['quantization']}")
    if fit is not None and "train" in fit.data_stats:
        d = fit.data_stats["train"]
        parts.append(f"- train tokens: {d['tokens']:,}, {d['loss_share']:.1%} carry loss, "
                     f"{d['truncated']} rows truncated, final train loss {fit.train_loss:.4f}")
    parts += ["", f"## Held-out metrics (%, n={session.results['after']['n']})", "", markdown_table(rows), ""]
    if "plan" in session.results:
        parts += plan_lines(session.results["plan"], eval_loss_curve(session.run.read_metrics()))
    parts += ["## First held-out examples", ""]
    for ex in session.results["after"]["examples"][:5]:
        parts += [f"- prompt: {ex['prompt']!r}", f"  - reference: `{ex['reference']}`",
                  f"  - prediction: `{ex['prediction']}`"]
        parts += [f"  - {key}: {ex[key]}" for key in ("passages", "examples") if key in ex]
    session.run.write_text("report.md", "\n".join(parts) + "\n")
