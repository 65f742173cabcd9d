"""``ftatlas arena --ray local``: the same cells as Ray tasks on a local Ray instance, run in parallel."""

from __future__ import annotations

import csv
import sys

from typer.testing import CliRunner

from ftatlas.cli import app
from tests.conftest import THREE_CELLS, arena_file


def _arena(folder, model_dir, cells=THREE_CELLS):
    folder.mkdir(parents=True, exist_ok=True)
    return arena_file(folder, model_dir, cells)


def _table(root):
    with open(root / "table.csv") as f:
        return list(csv.DictReader(f))


def test_ray_cells_run_in_parallel_record_failures_and_match_the_sequential_table(tiny_model_dir, tmp_path,
                                                                                   three_cell_arena):
    path = _arena(tmp_path / "ray", tiny_model_dir)
    res = CliRunner().invoke(app, ["arena", str(path), "--ray", "local"])
    assert res.exit_code == 0, res.output
    root = tmp_path / "ray" / "arena" / "tiny"
    ray_rows = _table(root)
    assert [r["cell"] for r in ray_rows] == ["base", "lora", "broken"]
    assert [r["verdict"].startswith("failed") for r in ray_rows] == [False, False, True]
    assert "bias" in ray_rows[2]["verdict"]  # the failed cell's own error, read from its log
    # both train processes were alive at once: each started (recipe.yaml) before the other finished (eval.json)
    spans = [((root / "cells" / c / "recipe.yaml").stat().st_mtime, (root / "cells" / c / "eval.json").stat().st_mtime)
             for c in ("base", "lora")]
    assert max(s for s, _ in spans) < min(e for _, e in spans)

    _, seq_root, _ = three_cell_arena  # the same cells run one after another
    seq_rows = _table(seq_root)
    assert [list(r) for r in ray_rows] == [list(r) for r in seq_rows]  # same columns
    same = ("cell", "method", "context", "trainable params")
    assert [[r[k] for k in same] for r in ray_rows] == [[r[k] for k in same] for r in seq_rows]
    assert [r["verdict"].startswith("failed") for r in seq_rows] == [False, False, True]

    again = CliRunner().invoke(app, ["arena", str(path), "--ray", "local", "--only", "base,lora"])
    assert again.exit_code == 0 and again.output.count("finished before with the same recipe") == 2


def test_bad_ray_options_fail_clearly(tiny_model_dir, tmp_path):
    path = _arena(tmp_path, tiny_model_dir)
    res = CliRunner().invoke(app, ["arena", str(path), "--ray", "local", "--cell-cpus", "0"])
    assert res.exit_code == 2 and "--cell-cpus" in res.output


def test_ray_missing_says_how_to_install(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    res = CliRunner().invoke(app, ["arena", str(_arena(tmp_path, tiny_model_dir)), "--ray", "auto"])
    assert res.exit_code == 2 and "pip install 'ftatlas[ray]'" in res.output
