"""grpo / rloo / ppo end to end on the tiny model, PPO's maths on hand-sized tensors, rejection sampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe

from ftatlas.data.preference import read_preference_file
from ftatlas.data.readers import read_file
from ftatlas.data.rejection import rejection_sample
from ftatlas.models.trained import load_run_or_model
from ftatlas.objectives.callbacks import TrainingDiverged
from ftatlas.objectives.ppo import ValueHead, completion_mask, gae, whiten
from ftatlas.pipeline import train
from ftatlas.recipe import DecodeSpec
from ftatlas.resolve import build_recipe
from ftatlas.rewards import RewardError, RewardSpec

RECORDER = """
import json
def record(prompts, completions, reference, **kwargs):
    with open({log!r}, "a") as f:
        f.write(json.dumps({{"prompts": prompts, "completions": completions, "reference": reference,
                            "kwargs": sorted(kwargs)}}) + "\\n")
    return [float(len(c) % 3) for c in completions]  # varies, so groups have non-zero advantages
"""


def online_recipe(model_dir: Path, out: Path, objective: dict, method: dict | None = None, **train) -> dict:
    return tiny_recipe(
        model_dir, out, data={"builtin": "ages", "max_train": 8},
        method=method or {"name": "lora", "r": 4, "alpha": 8},
        objective={"num_generations": 2, "max_completion_length": 6, **objective},
        train={"max_steps": 2, "batch_size": 2, **train},
        eval={"max_examples": 2, "batch_size": 2, "decode": {"max_new_tokens": 4}},
        output={"dir": str(out), "name": objective["name"], "overwrite": True})


def test_grpo_calls_user_reward_with_documented_signature(tiny_model_dir, tmp_path):
    log = tmp_path / "calls.jsonl"
    fn = tmp_path / "user_rewards.py"
    fn.write_text(RECORDER.format(log=str(log)))
    r = online_recipe(tiny_model_dir, tmp_path, {"name": "grpo", "rewards": [
        {"name": f"{fn}:record"}, {"name": "contains", "weight": 0.5}]})
    session = train(build_recipe(r), progress=False)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 2  # one call per step
    for c in calls:
        assert len(c["prompts"]) == len(c["completions"]) == len(c["reference"]) == 4  # 2 prompts x 2 generations
        assert c["prompts"][0] == c["prompts"][1] and "<|im_start|>user" in c["prompts"][0]  # rendered, grouped
        assert all(isinstance(x, str) for x in c["completions"]) and all(x.isdigit() for x in c["reference"])
        assert "completion_ids" in c["kwargs"] and "trainer_state" in c["kwargs"]
    rows = session.run.read_metrics()
    assert [row["step"] for row in rows if "reward" in row] == [1, 2]
    assert all(f"rewards/{fn}:record/mean" in row and "kl" in row for row in rows if "reward" in row)
    loaded, _, _ = load_run_or_model(str(session.run.path))  # the saved adapter loads back
    assert session.run.adapter_dir.is_dir() and loaded.model is not None


def test_grpo_stops_on_raising_reward_naming_it(tiny_model_dir, tmp_path):
    fn = tmp_path / "bad_rewards.py"
    fn.write_text("def broken(prompts, completions, **kw):\n    raise RuntimeError('scorer offline')\n")
    r = online_recipe(tiny_model_dir, tmp_path, {"name": "grpo", "rewards": [{"name": f"{fn}:broken"}]})
    with pytest.raises(RewardError, match=r"reward function '.*bad_rewards.py:broken' raised RuntimeError: scorer"):
        train(build_recipe(r), progress=False)


def test_rloo_full_model_runs_and_saves(tiny_model_dir, tmp_path):
    r = online_recipe(tiny_model_dir, tmp_path, {"name": "rloo", "rewards": [{"name": "length_penalty", "target": 2}]},
                      method={"name": "full"})
    session = train(build_recipe(r), progress=False)
    assert (session.run.model_dir / "config.json").is_file()
    assert any("reward" in row for row in session.run.read_metrics())
    loaded, _, _ = load_run_or_model(str(session.run.path))
    assert sum(p.numel() for p in loaded.model.parameters()) > 0


def test_ppo_logs_reward_kl_and_losses_per_step(tiny_model_dir, tmp_path, capsys):
    r = online_recipe(tiny_model_dir, tmp_path, {"name": "ppo", "rewards": [{"name": "length_penalty", "target": 2}]},
                      max_steps=3, log_every=1, lr=1e-2)
    session = train(build_recipe(r), progress=False)
    assert "experimental objective 'ppo'" in capsys.readouterr().err  # said at run time and in the report
    assert "**experimental** objective `ppo`" in (session.run.path / "report.md").read_text()
    rows = session.run.read_metrics()
    assert [row["step"] for row in rows] == [1, 2, 3]
    for row in rows:
        for key in ("reward", "kl", "policy_loss", "value_loss", "clip_fraction", "loss"):
            assert isinstance(row[key], float), key
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # first rollout: policy == reference
    assert any(abs(row["kl"]) > 1e-6 for row in rows[1:])  # the policy moved away from the reference
    assert (session.run.path / "value_head.pt").is_file() and session.run.adapter_dir.is_dir()


def test_ppo_nan_loss_stops_with_step_and_keeps_last_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    forward = ValueHead.forward

    def poisoned(self, hidden):
        calls["n"] += 1
        v = forward(self, hidden)
        return v * float("nan") if calls["n"] > 6 else v  # 3 forwards per step (rollout + 2 epochs)

    monkeypatch.setattr(ValueHead, "forward", poisoned)
    r = online_recipe(tiny_model_dir, tmp_path, {"name": "ppo", "rewards": [{"name": "contains"}]},
                      max_steps=4, save_every=1, log_every=1)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(nan\) at step 3.*checkpoint-2"):
        train(build_recipe(r), progress=False)
    run = tmp_path / "ppo"
    assert (run / "checkpoints" / "checkpoint-2" / "value_head.pt").is_file()
    assert not (run / "adapter").exists()  # no final weights from a diverged run
    assert "step 3" in json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["error"]


def test_gae_whiten_and_completion_mask_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.5, 0.5]]))  # Monte-Carlo return 1 minus value 0.5
    assert torch.allclose(ret, torch.ones(1, 3))
    adv, _ = gae(rewards, values, torch.tensor([[1.0, 1.0, 0.0]]), gamma=1.0, lam=1.0)
    assert adv[0, 2] == 0 and torch.allclose(adv[0, :2], torch.tensor([-0.5, -0.5]))  # masked tail is ignored
    w = whiten(torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    assert w[0, 3] == 0 and abs(float(w[0, :3].mean())) < 1e-6
    m = completion_mask(torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]]), eos_id=2)
    assert m.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_rejection_sampling_writes_readable_sft_and_pairs(tiny_model_dir, tmp_path):
    result = rejection_sample(str(tiny_model_dir), "builtin:ages",
                              [RewardSpec(name="length_penalty", target=1, per_token=0.1)], tmp_path / "rs",
                              n=3, decode=DecodeSpec(max_new_tokens=6, seed=1), max_prompts=4, progress=False)
    sft = read_file(result.sft_path)
    pairs = read_preference_file(result.pairs_path)
    assert len(sft) == 4 and result.pairs == len(pairs) and result.pairs + result.ties == 4
    for s, row in zip(result.sampled, sft, strict=True):
        assert row.messages[-1].content == s.completions[s.best] and s.scores[s.best] == max(s.scores)
    for p in pairs:
        s = next(x for x in result.sampled if x.row.messages == p.prompt)
        assert p.chosen == s.completions[s.best] and p.rejected == s.completions[s.worst]


def test_trainer_nan_loss_raises_naming_step_and_last_checkpoint(tmp_path):
    from transformers import TrainerState

    from ftatlas.objectives.callbacks import MetricsLogger
    from ftatlas.runs import RunDir

    run = RunDir.create(tmp_path, "r")
    for step in (4, 12):
        (run.checkpoints_dir / f"checkpoint-{step}").mkdir(parents=True)
    state = TrainerState()
    state.global_step = 13
    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(inf\) at step 13.*checkpoint-12"):
        MetricsLogger(run).on_log(None, state, None, logs={"loss": float("inf")})
    assert "step 13" in run.read_metrics()[-1]["error"]


def test_grpo_against_a_trained_reward_model(tiny_model_dir, tmp_path, shared_run, notes_file):
    from tests.test_objective_matrix import objective_run

    rm = objective_run(shared_run, notes_file, "reward")  # the objective matrix's reward-model run
    r = online_recipe(tiny_model_dir, tmp_path, {"name": "grpo", "rewards": [
        {"name": "reward_model", "path": str(rm.run.path)}]}, max_steps=1)
    session = train(build_recipe(r), progress=False)
    rows = [row for row in session.run.read_metrics() if "reward" in row]
    assert rows and rows[0]["rewards/reward_model/std"] > 0  # real, varying scores from the model


@pytest.mark.parametrize("method", [{"name": "prompt"}, {"name": "freeze"}])
def test_ppo_with_virtual_tokens_and_frozen_copy_reference(tiny_model_dir, tmp_path, method):
    """Prompt tuning prepends virtual tokens to the outputs; freeze keeps a frozen copy as the reference."""
    r = online_recipe(tiny_model_dir, tmp_path, {"name": "ppo", "rewards": [{"name": "length_penalty", "target": 2}]},
                      method=method, log_every=1)
    session = train(build_recipe(r), progress=False)
    assert all(abs(row["loss"]) < 1e3 for row in session.run.read_metrics())
    assert load_run_or_model(str(session.run.path))[0].model is not None
