"""The export table: the run and its export side by side (size, held-out metrics with intervals, tokens/s)."""

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


def export_table(report: dict[str, Any]) -> Table:
    ref, exp = report["reference"], report["export"]
    names = list(ref.get("metrics", {}))
    table = Table(title=f"held-out re-score, n={exp.get('n')}")
    for col in ("artifact", "consumer", "size", *names, "gen tok/s"):
        table.add_column(col)
    label = f"{report['format']}" + (f" {report['quant']}" if report.get("quant") else "")
    table.add_row(f"run ({ref.get('from', '')})", "transformers", _size(report.get("source_fp32_bytes")),
                  *[_metric(ref, n) for n in names], str(ref.get("gen_tokens_per_s") or "-"))
    flagged = report.get("drops", {})
    table.add_row(label, report["consumer"], _size(report["size_bytes"]),
                  *[("[red]" + _metric(exp, n) + " drop[/]") if n in flagged else _metric(exp, n) for n in names],
                  str(exp.get("gen_tokens_per_s") or "-"))
    return table
