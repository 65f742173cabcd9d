"""The export table: the run and its export side by side (size, held-out metrics with intervals, tokens/s).

``export_rows`` is the table as plain rows (the UI renders them as HTML); ``export_table`` prints them with rich.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _size(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _metric(row: dict[str, Any], name: str) -> str:
    value = row.get("metrics", {}).get(name)
    if value is None:
        return "not scored" if name in row.get("not_scored", {}) else "-"
    ci = row.get("ci95", {}).get(name)
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def metric_names(report: dict[str, Any]) -> list[str]:
    return list(report["reference"].get("metrics", {}))


def export_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Two rows (the run, its export): artifact, consumer, size, each metric with its 95% interval, gen tok/s,
    and ``drops``: the metrics whose export value fell outside the run's interval on the bad side."""
    ref, exp = report["reference"], report["export"]
    names = metric_names(report)
    label = f"{report['format']}" + (f" {report['quant']}" if report.get("quant") else "")
    flagged = list(report.get("drops", {}))
    return [
        {"artifact": f"run ({ref.get('from', '')})", "consumer": "transformers",
         "size": _size(report.get("source_fp32_bytes")), **{n: _metric(ref, n) for n in names},
         "gen tok/s": str(ref.get("gen_tokens_per_s") or "-"), "drops": []},
        {"artifact": label, "consumer": report["consumer"], "size": _size(report["size_bytes"]),
         **{n: _metric(exp, n) for n in names}, "gen tok/s": str(exp.get("gen_tokens_per_s") or "-"),
         "drops": flagged},
    ]


def export_table(report: dict[str, Any]) -> Table:
    names = metric_names(report)
    table = Table(title=f"held-out re-score, n={report['export'].get('n')}")
    cols = ("artifact", "consumer", "size", *names, "gen tok/s")
    for col in cols:
        table.add_column(col)
    for row in export_rows(report):
        table.add_row(*[f"[red]{row[c]} drop[/]" if c in row["drops"] else row[c] for c in cols])
    return table


def logit_summary(report: dict[str, Any]) -> str:
    """The logit parity check in one sentence (relative max difference, argmax agreement, the bound if any)."""
    lp = report["logit_parity"]
    bound = f" (bound {lp['tolerance']:g}: {'OK' if lp['within_tolerance'] else 'MISMATCH'})" if lp["tolerance"] \
        else " (no bound for this quant: judged by the metric interval)"
    return (f"logits vs the fp32 run on {lp['prompts']} held-out prompts: max |diff| / max |logit| = "
            f"{lp['rel_diff']:.2e}, next-token argmax agrees at {lp['top1_agreement']:.1%} of "
            f"{lp['positions']} positions{bound}")
