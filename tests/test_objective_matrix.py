"""Conformance matrix over the objective registry: every objective, present and future, trains 2 steps on the
tiny model from the rows its ``data_kind`` names, saves weights that reload to the same outputs, and writes its
held-out evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ftatlas.models.trained import load_run_or_model
from ftatlas.objectives import OBJECTIVES

IDS = torch.tensor([[1, 20, 300, 4000, 5, 60, 700, 8]])


# Sample rows per data kind; an objective with a new kind adds a line here.
DATA = {
    "conversations": lambda _: {"builtin": "contacts", "max_length": 128, "max_train": 8},
    "preference": lambda _: {"builtin": "contacts", "max_length": 128, "max_train": 8},
    "unpaired": lambda _: {"builtin": "contacts", "max_length": 128, "max_train": 8},
    "prompts": lambda _: {"builtin": "ages", "max_train": 8},
    "text": lambda notes: {"builtin": None, "max_train": None, "train": str(notes), "eval_split": 0.25,
                           "max_length": 64},
}
# Small settings, given to every objective whose Params has the field.
SMALL = {"num_generations": 2, "max_completion_length": 6, "rewards": [{"name": "length_penalty", "target": 2}],
         "block_size": 16}
TRAIN = {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "log_every": 1, "precision": "fp32"}
EVAL = {"max_examples": 2, "batch_size": 2, "decode": {"max_new_tokens": 4}}


def outputs(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


def objective_run(shared_run, notes_file: Path, name: str, **over):
    """The matrix run of an objective (LoRA, 2 steps), trained once per session; tests elsewhere that only read
    such a run share it."""
    objective = OBJECTIVES.get(name)
    fields = {k: v for k, v in SMALL.items() if k in objective.Params.model_fields}
    return shared_run(data=DATA[objective.data_kind](notes_file), objective={"name": name, **fields, **over},
                      train=TRAIN, eval=EVAL)


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_objective_trains_saves_reloads_and_evaluates(name, shared_run, notes_file):
    objective = OBJECTIVES.get(name)
    assert objective.data_kind in DATA, f"objective {name}: add sample rows for data_kind {objective.data_kind!r}"
    s = objective_run(shared_run, notes_file, name)

    assert sorted({r["step"] for r in s.run.read_metrics() if "step" in r} & {1, 2}) == [1, 2]
    assert s.run.adapter_dir.is_dir()  # lora: the adapter alone ...
    assert [p.name for p in s.run.adapter_dir.iterdir() if p.is_dir()] == []  # ... no reference adapter beside it
    if (s.run.path / "objective.json").is_file():
        assert s.run.read_json("objective.json")["objective"] == name
    reloaded = load_run_or_model(str(s.run.path))[0].model
    torch.testing.assert_close(outputs(reloaded), outputs(s.results["fit"].model), atol=1e-5, rtol=1e-5)

    ev = s.run.read_json("eval.json")
    assert ev["n"] >= 1 and ev["metrics"]
    assert set(objective.eval_metrics or s.metrics) <= set(ev["metrics"])
