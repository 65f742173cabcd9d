"""The advise page's data: ``ftatlas advise`` run as a function, returned as JSON with the decision map laid
out for drawing (the same nodes and edges ``--format mermaid`` prints) and the ready recipes as dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def map_layout(path: list[str]) -> dict[str, Any]:
    """The seeds' flowchart: nodes with a layer (longest path from the start) and a column, edges, taken path."""
    from ftatlas.advise.decision_map import EDGES, NODES

    layer = {"A": 0}
    for _ in NODES:  # longest-path layering; the map is a small DAG
        for s, t, _label in EDGES:
            if s in layer:
                layer[t] = max(layer.get(t, 0), layer[s] + 1)
    cols: dict[int, int] = {}
    nodes = []
    for nid, node in NODES.items():
        lay = layer[nid]
        col = cols.get(lay, 0)
        cols[lay] = col + 1
        nodes.append({"id": nid, "label": node.label.replace("\\n", " "), "english": node.english,
                      "question": node.question, "layer": lay, "col": col, "taken": nid in path})
    hops = set(zip(path, path[1:], strict=False))
    edges = [{"from": s, "to": t, "label": {"Да": "yes", "Нет": "no"}.get(label, label), "taken": (s, t) in hops}
             for s, t, label in EDGES]
    return {"nodes": nodes, "edges": edges, "path": path}


def advise_json(model: str, data: str, goal: str, memory: str | None, batch_size: int, max_length: int,
                out_dir: Path, runs_root: Path) -> dict[str, Any]:
    """Everything ``ftatlas advise`` prints, as data; recipes are written to ``out_dir`` like the CLI's ``--out``
    and returned with ``output.dir`` pointing at the UI's runs folder so "run" lands them there."""
    from ftatlas.advise.advisor import advise, parse_size
    from ftatlas.advise.decision_map import mermaid
    from ftatlas.advise.recipes import write_advice
    from ftatlas.advise.render import recommendation_lines, summary_lines, table_rows

    a = advise(model, data, goal, "auto", parse_size(memory) if memory else None, None, batch_size, max_length)
    written = write_advice(a, out_dir, model, data, goal, batch_size, max_length, "auto")
    recipes = []
    for w in written:
        recipe = yaml.safe_load(w.path.read_text())
        recipe["output"] = {"dir": str(runs_root), "name": recipe.get("output", {}).get("name")}
        recipes.append({"file": str(w.path), "purpose": w.purpose, "command": w.command, "recipe": recipe})
    return {
        "summary": summary_lines(a), "walk": a.walk.lines(), "map": map_layout(a.walk.path),
        "mermaid": mermaid(a.walk), "table": table_rows(a), "recommendation": recommendation_lines(a),
        "method": a.method, "notes": a.notes, "recipes": recipes,
    }
