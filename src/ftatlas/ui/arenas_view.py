"""The arena pages' data, read from what ``ftatlas arena`` wrote: ``<arenas>/<name>/cells/<cell>.json`` rows,
the same table and verdicts as table.md (``ftatlas.arena.report``), and the plot PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLOTS = ("quality_vs_memory.png", "quality_vs_time.png", "loss_curves.png")


def list_arenas(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    out = []
    for cells in sorted(root.glob("*/cells")):
        rows = list(cells.glob("*.json"))
        out.append({"name": cells.parent.name, "cells": len(rows),
                    "ok": sum(1 for r in rows if _load(r).get("status") == "ok")})
    return out


def _load(path: Path) -> dict[str, Any]:
    try:
        row = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        return {"cell": path.stem, "status": "failed", "error": f"{path}: unreadable ({e})"}
    return row if isinstance(row, dict) else {"cell": path.stem, "status": "failed", "error": f"{path}: not an object"}


def arena_detail(root: Path, name: str) -> dict[str, Any]:
    """Table rows (text, as table.md), the raw numbers for interactive plots, verdicts and plot file names."""
    from ftatlas.arena.report import primary_metric, table_rows

    folder = (root / name).resolve()
    if folder.parent != root.resolve() or not (folder / "cells").is_dir():
        raise FileNotFoundError(f"no arena named {name!r} in {root}")
    order = _cell_order(folder)
    rows = sorted((_load(p) for p in (folder / "cells").glob("*.json")),
                  key=lambda r: order.get(r.get("cell", ""), len(order)))
    metric = primary_metric(rows)
    points = [{"cell": r["cell"], "method": r.get("method"), "context": r.get("context"),
               "metric": (r.get("metrics") or {}).get(metric) if metric else None,
               "ci": (r.get("ci95") or {}).get(metric) if metric else None,
               "peak_gib": (r.get("peak_bytes") or 0) / 2**30, "train_seconds": r.get("train_seconds") or 0,
               "losses": r.get("losses", [])} for r in rows if r.get("status") == "ok"]
    return {"name": name, "metric": metric, "own_scale": any(metric in r.get("scales", {}) for r in rows),
            "table": table_rows(rows), "points": points,
            "plots": [p for p in PLOTS if (folder / p).is_file()]}


def _cell_order(folder: Path) -> dict[str, int]:
    """Cells in the order table.csv lists them (the arena file's order), when it exists."""
    csv_file = folder / "table.csv"
    if not csv_file.is_file():
        return {}
    names = [line.split(",", 1)[0] for line in csv_file.read_text().splitlines()[1:] if line]
    return {n: i for i, n in enumerate(names)}


def plot_file(root: Path, name: str, plot: str) -> Path:
    if plot not in PLOTS:
        raise FileNotFoundError(f"no plot {plot!r}; plots: {', '.join(PLOTS)}")
    path = (root / name / plot).resolve()
    if path.parent.parent != root.resolve() or not path.is_file():
        raise FileNotFoundError(f"arena {name!r} has no {plot}")
    return path


def arena_files(root: Path) -> list[dict[str, Any]]:
    """Arena YAMLs directly in the arenas folder (what ``run arena`` offers), each with its name or why it is not
    valid (``ftatlas arena``'s own validation)."""
    from ftatlas.arena.runner import ArenaError, load_arena

    out = []
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]) if root.is_dir() else []:
        try:
            spec = load_arena(path)
            out.append({"file": path.name, "name": spec.name, "cells": len(spec.cells), "error": None})
        except ArenaError as e:
            out.append({"file": path.name, "name": None, "cells": None, "error": str(e)})
    return out


def launchable(root: Path, file: str, cwd: Path) -> tuple[Path, Any]:
    """The arena file ``root/file`` and its validated spec, if its results land in ``root`` (where the UI reads
    arenas); anything else is a clear error."""
    from ftatlas.arena.runner import load_arena

    path = (root / file).resolve()
    if path.parent != root.resolve() or path.suffix not in (".yaml", ".yml") or not path.is_file():
        raise FileNotFoundError(f"no arena file {file!r} in {root}")
    spec = load_arena(path)
    out = Path(str(spec.output.get("dir", "arena")))
    out = out if out.is_absolute() else cwd / out  # the job runs in cwd, as a terminal would
    if out.resolve() != root.resolve():
        raise ValueError(f"{path}: output.dir is {spec.output.get('dir', 'arena')!r}, which resolves to "
                         f"{out.resolve()}; this UI shows arenas under {root.resolve()}: set output.dir to it")
    return path, spec
