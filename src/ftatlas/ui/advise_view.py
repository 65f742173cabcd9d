"""The advise page's data: ``ftatlas advise`` run as a function, returned as JSON with the decision map laid
out for drawing (the same nodes and edges ``--format mermaid`` prints) and the ready recipes as dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def map_layout(path: list[str]) -> dict[str, Any]:
    """The seeds' flowchart laid out for drawing: the questions down one column (the "no" spine), each "yes"
    leaf beside its question, the hybrids' node beside the spine's end; edges and the taken path marked."""
    from ftatlas.advise.decision_map import EDGES, NODES

    place: dict[str, tuple[int, int]] = {}
    node, row = "A", 0
    while node is not None:
        place[node] = (row, 0)
        yes = [t for s, t, label in EDGES if s == node and label == "Да"]
        if yes:
            place[yes[0]] = (row, 1)
        node = next((t for s, t, label in EDGES if s == node and label != "Да"), None)
        row += 1
    for nid in NODES:  # what the spine and its leaves did not reach (the hybrids): beside the spine's end
        place.setdefault(nid, (row - 1, 1))
    nodes = [{"id": nid, "label": "".join(c for c in n.label.replace("\\n", " ") if ord(c) < 0x10000).strip(),
              "english": n.english, "question": n.question, "layer": place[nid][0], "col": place[nid][1],
              "taken": nid in path} for nid, n in NODES.items()]
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
