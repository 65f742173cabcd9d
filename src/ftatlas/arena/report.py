"""The arena's outputs: table.md, table.csv and report.html (with PNG plots), plus a verdict per cell.

The verdicts are derived from the measured numbers, in the spirit of the Atlas' "when is it best" column:
per metric the best cell and the cheapest cell whose interval overlaps it; lowest memory; no-training cells'
price in prompt tokens; and cells that another cell beats on every metric, memory and train time at once.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from typing import Any

from ftatlas.arena.spec import ArenaSpec
from ftatlas.extras import require
from ftatlas.run_report import metric_text
from ftatlas.runs import atomic_write


def primary_metric(rows: list[dict[str, Any]]) -> str | None:
    for r in rows:
        if r.get("status") == "ok" and r.get("metrics"):
            return next(iter(r["metrics"]))
    return None


def verdicts(rows: list[dict[str, Any]], metric: str | None = None) -> dict[str, str]:
    """One line per cell from the numbers: for every metric the best cell and the cheapest cell whose interval
    overlaps it; the lowest peak memory; a no-training cell's price in prompt tokens; and the cell, if any, that
    is at least as good on every metric (within its interval), clearly better on one, and no dearer in memory or
    train time. ``metric`` (the primary one) comes first; every other metric the cells share follows."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("metrics") and not r.get("no_verdict")]
    out: dict[str, list[str]] = {r["cell"]: [r["no_verdict"]] if r.get("no_verdict") else
                                 [] if r.get("status") == "ok" else ["failed"] for r in rows}
    names = list(dict.fromkeys([*([metric] if metric else []), *(m for r in ok for m in r["metrics"])]))
    for m in names:
        scored = [r for r in ok if r["metrics"].get(m) is not None]
        if not scored:
            continue
        sign = _sign(scored, m)
        top = max(sign * r["metrics"][m] for r in scored)
        best = min((r for r in scored if sign * r["metrics"][m] == top), key=_cost)
        out[best["cell"]].append(f"best {m}")
        near = [r for r in scored if _interval(r, m)[1 if sign > 0 else 0] * sign >= _interval(best, m)[
            0 if sign > 0 else 1] * sign]
        cheapest = min(near, key=_cost)
        if cheapest is not best:
            out[cheapest["cell"]].append(f"cheapest whose {m} interval overlaps the best")
    if ok:
        lowest = min(ok, key=lambda r: r.get("peak_bytes") or float("inf"))
        out[lowest["cell"]].append("lowest peak memory")
    for r in ok:
        if r.get("method") == "none":
            out[r["cell"]].append(f"no training; {r.get('prompt_tokens') or 0:.0f} prompt tokens on every call")
        beater = next((o for o in ok if o is not r and _dominates(o, r, names)), None)
        if beater is not None:
            out[r["cell"]].append(f"dominated by {beater['cell']} (as good on every metric, clearly better on one, "
                                  "no more memory or train time)")
    return {k: "; ".join(v) or "-" for k, v in out.items()}


def _sign(rows: list[dict[str, Any]], metric: str) -> int:
    """-1 where eval.json lists the metric as lower-is-better (perplexity), else +1."""
    return -1 if any(metric in r.get("lower_is_better", []) for r in rows) else 1


def _interval(r: dict[str, Any], metric: str) -> list[float]:
    v = r["metrics"][metric]
    return r.get("ci95", {}).get(metric) or [v, v]


def _cost(r: dict[str, Any]) -> tuple[float, float]:
    return r.get("train_seconds") or 0, r.get("peak_bytes") or 0


def _dominates(a: dict[str, Any], b: dict[str, Any], metrics: list[str]) -> bool:
    if (a.get("peak_bytes") or 0) > (b.get("peak_bytes") or 0) or _cost(a)[0] > _cost(b)[0]:
        return False
    shared = [m for m in metrics if a["metrics"].get(m) is not None and b["metrics"].get(m) is not None]
    clearly_better = False
    for m in shared:
        s = _sign([a, b], m)
        lo, hi = sorted(s * x for x in _interval(a, m))
        bv = s * b["metrics"][m]
        if hi < bv:  # a is clearly worse here (b's value above a's whole interval)
            return False
        clearly_better = clearly_better or lo > bv
    return bool(shared) and clearly_better


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    metric = primary_metric(rows)
    verdict = verdicts(rows, metric)
    names = list(dict.fromkeys(m for r in rows if r.get("status") == "ok" for m in r.get("metrics", {})))
    out = []
    for r in rows:
        row = {"cell": r["cell"], "method": r.get("method", "-"), "objective": r.get("objective", "-"),
               "context": r.get("context", "-")}
        if r.get("status") != "ok":
            out.append(row | {m: "-" for m in names} | {k: "-" for k in _COST_COLUMNS}
                       | {"verdict": f"failed: {r.get('error', '?')}"})
            continue
        for m in names:
            v, ci, own = r["metrics"].get(m), r.get("ci95", {}).get(m), m in r.get("scales", {})
            row[m] = metric_text(v, own) + (f" [{metric_text(ci[0], own)}, {metric_text(ci[1], own)}]"
                                            if v is not None and ci else "")
        # an export row trains nothing and has no train time or trainable params: "—", never a false 0
        row |= {
            "trainable params": _or_dash(r.get("trainable_params"), "{:,}"),
            "peak memory": _memory_text(r),
            "train time": _or_dash(r.get("train_seconds"), "{:.0f} s"),
            "kept step": kept_step_text(r),
            "tokens/s": f"{r['tokens_per_s']:,.0f}" if r.get("tokens_per_s") else "-",
            "prompt tokens/request": _or_dash(r.get("prompt_tokens"), "{:.0f}"),
            "latency/request": f"{r['latency_s']:.2f} s" if r.get("latency_s") is not None else "-",
            "verdict": verdict[r["cell"]],
        }
        out.append(row)
    return out


def _or_dash(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


# memory_kind -> label: a cell's process peak (RSS or CUDA max allocated); an export row's is the RSS its artifact
# adds in its consumer (load + scoring), see ftatlas.export.api
_MEMORY_KINDS = {"cuda": "CUDA", "rss": "RSS", "rss_added": "RSS (artifact)"}


def _memory_text(r: dict[str, Any]) -> str:
    if r.get("peak_bytes") is None:
        return "—"
    return f"{r['peak_bytes'] / 2**30:.2f} GiB {_MEMORY_KINDS.get(r.get('memory_kind') or 'rss', 'RSS')}"


_COST_COLUMNS = ("trainable params", "peak memory", "train time", "kept step", "tokens/s", "prompt tokens/request",
                 "latency/request")


def kept_step_text(r: dict[str, Any]) -> str:
    """``40 of 120 (early stop)``: the step whose weights a cell kept, of the steps its budget planned."""
    kept = r.get("kept_step")
    if kept is None:
        return "-"
    planned = r.get("planned_steps")
    if planned is None:
        return str(kept)
    return f"{kept} of {planned}" + (" (early stop)" if r.get("stopped_early") else "")


def write_reports(spec: ArenaSpec, rows: list[dict[str, Any]], root: Path) -> None:
    from ftatlas.run_report import markdown_table

    table = table_rows(rows)
    metric = primary_metric(rows)
    header = (f"# Arena `{spec.name}`\n\nmetrics in % (perplexity and judge scores on their own scale) with "
              "bootstrap 95% intervals; n = held-out examples per cell\n\n")
    atomic_write(root / "table.md", header + markdown_table(table) + "\n")
    buf = io.StringIO()
    if table:
        writer = csv.DictWriter(buf, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    atomic_write(root / "table.csv", buf.getvalue())
    plots = _plots(rows, metric, root)
    atomic_write(root / "report.html", _html(spec, table, plots))


def _plots(rows: list[dict[str, Any]], metric: str | None, root: Path) -> dict[str, Path]:
    matplotlib = require("matplotlib", "arena", "arena plots")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot", "arena", "arena plots")

    ok = [r for r in rows if r.get("status") == "ok"]
    own_scale = any(metric in r.get("scales", {}) for r in ok)
    out = {}
    if metric and ok:
        for key, label, fname in (("peak_bytes", "peak memory (GiB)", "quality_vs_memory.png"),
                                  ("train_seconds", "train time (s)", "quality_vs_time.png")):
            fig, ax = plt.subplots(figsize=(6, 4))
            for r in ok:
                if r["metrics"].get(metric) is None:
                    continue
                x = (r.get(key) or 0) / (2**30 if key == "peak_bytes" else 1)
                y = r["metrics"][metric] * (1 if own_scale else 100)
                ax.scatter(x, y)
                ax.annotate(r["cell"], (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(label)
            ax.set_ylabel(metric if own_scale else f"{metric} (%)")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(root / fname, dpi=100)
            plt.close(fig)
            out[label] = root / fname
    curves = [r for r in ok if r.get("losses")]
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in curves:
            steps, losses = zip(*r["losses"], strict=True)
            line, = ax.plot(steps, losses, label=r["cell"])
            if r.get("eval_losses"):  # held-out loss dashed in the same colour, the kept step marked
                es, el = zip(*r["eval_losses"], strict=True)
                ax.plot(es, el, "--", color=line.get_color())
                if r.get("kept_step") in es:
                    ax.plot([r["kept_step"]], [el[es.index(r["kept_step"])]], "o", color=line.get_color())
        ax.set_xlabel("step")
        ax.set_ylabel("train loss (held-out dashed, kept step o)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(root / "loss_curves.png", dpi=100)
        plt.close(fig)
        out["loss curves"] = root / "loss_curves.png"
    return out


def _html(spec: ArenaSpec, table: list[dict[str, str]], plots: dict[str, Path]) -> str:
    cols = list(table[0]) if table else []
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>" for r in table)
    imgs = "".join(
        f"<h2>{html.escape(title)}</h2><img alt=\"{html.escape(title)}\" "
        f"src=\"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}\">"
        for title, path in plots.items())
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Arena {html.escape(spec.name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
            f"</head><body><h1>Arena {html.escape(spec.name)}</h1>"
            f"<p>metrics in % with bootstrap 95% intervals</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{imgs}</body></html>\n")
