"""`ftatlas advise`: the decision map's every branch, the memory model's parts, recipes, bad input, the CLI."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import LlamaForCausalLM
from typer.testing import CliRunner

from ftatlas.advise.advisor import advise, parse_duration, parse_size
from ftatlas.advise.decision_map import EDGES, ENOUGH_ROWS, NODES, Facts, mermaid, walk
from ftatlas.advise.estimate import (
    BACKWARD_ADAPTER_ROWS,
    BACKWARD_TEMP_ROWS,
    RUNTIME_BYTES,
    RUNTIME_BYTES_PER_LAYER,
    Arch,
    DataShape,
    StepSpec,
    Throughput,
    activation_bytes_per_token_layer,
    estimate_step,
)
from ftatlas.advise.recipes import plan, write_recipes
from ftatlas.cli import app
from ftatlas.methods import METHODS, count_params
from ftatlas.models.loading import ModelLoadError
from ftatlas.resolve import load_recipe
from tests.conftest import tiny_config, write_jsonl

ALL = frozenset({"full", "freeze", "lora", "qlora", "adapter", "prefix", "bitfit", "ia3", "lntuning"})


@pytest.mark.parametrize("facts, path", [
    (Facts("task", ENOUGH_ROWS, ALL), "ABC"),
    (Facts("task", 300, ALL, answer_p50=1, distinct_answers=3), "ABDE"),
    (Facts("style", 300, ALL, answer_p50=40, distinct_answers=300), "ABDFGO"),
    (Facts("task", 300, frozenset({"bitfit", "freeze"}), answer_p50=40, distinct_answers=300), "ABDFHI"),
    (Facts("chat", 300, ALL), "ABDFHJKO"),
    (Facts("knowledge", 5000, ALL), "ABDFHJLMO"),
    (Facts("task", 300, frozenset(), answer_p50=40, distinct_answers=300), "ABDFHJLN"),
])
def test_walk_takes_every_branch(facts, path):
    w = walk(facts)
    assert "".join(w.path) == path
    assert all(s.answer in ("Да", "Нет") for s in w.steps if NODES[s.node].question)


def test_walk_rejects_unknown_goal():
    with pytest.raises(ValueError, match="unknown goal"):
        walk(Facts("poetry", 10, ALL))


def test_map_matches_the_seeds_flowchart_and_highlights_the_path():
    assert len(NODES) == 15 and len(EDGES) == 16
    assert {t for s, t, _ in EDGES if s in ("G", "K", "M")} == {"O"}
    text = mermaid(walk(Facts("chat", 300, ALL)))
    assert text.startswith("flowchart TD") and "class A,B,D,F,H,J,K,O taken" in text
    hot = [i for i, (s, t, _) in enumerate(EDGES) if (s, t) in {("J", "K"), ("K", "O"), ("A", "B")}]
    style = next(line for line in text.splitlines() if line.startswith("linkStyle"))
    assert all(str(i) in style.split()[1].split(",") for i in hot)
    assert "linkStyle" not in mermaid()


@pytest.fixture(scope="module")
def cfg(tokenizer):
    return tiny_config(tokenizer)


@pytest.mark.parametrize("method", ["full", "lora", "freeze", "ia3", "prefix"])
def test_trainable_params_match_a_real_model(cfg, method):
    torch.manual_seed(0)
    real = count_params(METHODS.get(method)().apply(LlamaForCausalLM(cfg), METHODS.get(method).Params()))
    est = estimate_step(cfg, method, DataShape.from_lengths([32] * 8), StepSpec(batch_size=2))
    assert est.params.trainable_params == real.trainable
    assert est.params.grad_bytes == 4 * real.trainable and est.params.optimizer_bytes == 8 * real.trainable


def test_packed_tokens_round_up_to_the_pad_multiple(cfg):
    """4 rows of 50 tokens pack to 200 + a 56-token filler at pad_multiple 64; prompt tuning is not packed."""
    data = DataShape.from_lengths([50] * 10)
    one, pad = (estimate_step(cfg, "lora", data, StepSpec(batch_size=4, pad_multiple=m)) for m in (1, 64))
    assert (one.tokens, pad.tokens) == (200, 256) and pad.activation_bytes == one.activation_bytes * 256 // 200
    assert pad.filler_tokens == 31.5 and one.filler_tokens == 0
    tp = Throughput(1e12, 1e11)
    assert pad.seconds_per_step(tp, 200) > one.seconds_per_step(tp, 200)  # the filler is work too
    assert estimate_step(cfg, "prompt", data, StepSpec(batch_size=4, pad_multiple=64)).filler_tokens == 0


def test_activations_follow_the_hand_formula(cfg):
    arch = Arch.from_config(cfg)  # h 64, q 64, kv 32, i 128, 2 layers
    # full: both norms' inputs and normalised tensors in fp32 (2*2*4*64), bf16 copies/attention/MLP 2*(128+256+64+512)
    assert activation_bytes_per_token_layer(arch, 2, 4, True, 0) == 1024 + 1920
    data = DataShape.from_lengths([64] * 10)
    full = estimate_step(cfg, "full", data, StepSpec(batch_size=4, gradient_checkpointing=False))
    assert full.tokens == 256 and full.activation_bytes == 256 * 2 * (1024 + 1920)
    # lora (all-linear, r 16, dropout 0): frozen norms; per layer the 7 rank-16 outputs
    lora = estimate_step(cfg, "lora", data, StepSpec(batch_size=4, gradient_checkpointing=False))
    assert lora.activation_bytes == 256 * 2 * (512 + 2 * (960 + 7 * 16))
    # with dropout each adapted layer also saves its dropped input (6 x 64 in + 128 for down)
    dropped = estimate_step(cfg, "lora", data, StepSpec(batch_size=4, gradient_checkpointing=False), {"dropout": 0.05})
    assert dropped.activation_bytes == 256 * 2 * (512 + 2 * (960 + 6 * 64 + 128 + 7 * 16))
    # freeze top 1 of 2 layers: only that layer saves; checkpointing keeps layer inputs plus one layer's set
    top = estimate_step(cfg, "freeze", data, StepSpec(batch_size=4, gradient_checkpointing=False), {"top_n": 1})
    assert top.activation_bytes == 256 * 1 * (1024 + 1920)
    ckpt = estimate_step(cfg, "full", data, StepSpec(batch_size=4, gradient_checkpointing=True))
    # the default (None) follows train.gradient_checkpointing=auto: on, except for prefix
    assert estimate_step(cfg, "full", data, StepSpec(batch_size=4)).activation_bytes == ckpt.activation_bytes
    assert estimate_step(cfg, "prefix", data, StepSpec(batch_size=4)).activation_bytes == estimate_step(
        cfg, "prefix", data, StepSpec(batch_size=4, gradient_checkpointing=False)).activation_bytes
    assert ckpt.activation_bytes == 256 * (2 * 4 * 64 + 1024 + 1920)
    # the autocast cache is cleared before the backward: its casts never add up with the weight gradients
    over = ckpt.peak_bytes - ckpt.parts["runtime"] - ckpt.params.trainable_bytes - ckpt.params.optimizer_bytes
    forward = ckpt.parts["autocast_copies"] + ckpt.activation_bytes + ckpt.parts["loss"]
    step_temp = ckpt.params.grad_bytes + ckpt.parts["optimizer_temp"]
    assert max(ckpt.params.grad_bytes, forward) <= over < forward + step_temp
    # fp32 (no autocast): twice the bf16 terms, no weight copies
    fp32 = estimate_step(cfg, "full", data, StepSpec(batch_size=4, gradient_checkpointing=False, autocast=False))
    assert fp32.activation_bytes == 256 * 2 * (1024 + 2 * 1920) and fp32.parts["autocast_copies"] == 0
    assert full.parts["autocast_copies"] == 2 * 2 * arch.layer_linear_params
    assert full.peak_bytes > lora.peak_bytes > top.params.frozen_bytes + top.parts["runtime"]
    # the runtime part: a constant and a part per decoder layer
    assert top.parts["runtime"] == RUNTIME_BYTES["cpu"] + arch.layers * RUNTIME_BYTES_PER_LAYER["cpu"]
    # PEFT under autocast keeps its frozen linears in bf16 (train.frozen_half): 2 bytes less each, no copies
    fp32_store = estimate_step(cfg, "lora", data,
                               StepSpec(batch_size=4, gradient_checkpointing=False, frozen_half=False))
    # autocast caches the casts of trainable linears only (LoRA's A and B); fp32-stored frozen linears are cast
    # every forward and, without checkpointing, their casts are saved for backward
    assert lora.parts["autocast_copies"] == 2 * lora.params.trainable_params
    assert fp32_store.parts["autocast_copies"] == 2 * 2 * arch.layer_linear_params
    assert fp32_store.peak_bytes - lora.peak_bytes == (
        2 * 2 * arch.layer_linear_params + 2 * 2 * arch.layer_linear_params - 2 * lora.params.trainable_params)
    # with checkpointing: the cached casts of what trains plus one block's casts while it is recomputed
    assert ckpt.parts["autocast_copies"] == 2 * (2 + 1) * arch.layer_linear_params
    top_ckpt = estimate_step(cfg, "freeze", data, StepSpec(batch_size=4, gradient_checkpointing=True), {"top_n": 1})
    assert top_ckpt.parts["autocast_copies"] == 2 * (1 + 1) * arch.layer_linear_params


def test_peak_is_the_largest_phase_and_the_backward_counts_gradient_temporaries(cfg, monkeypatch):
    """peak = weights and optimizer states + the largest of forward, backward and optimizer step + runtime; the
    backward adds BACKWARD_TEMP_ROWS rows of tokens x (hidden + intermediate) fp32 and BACKWARD_ADAPTER_ROWS rows of
    tokens x the inputs of a layer's LoRA-style modules and the widths IA3 scales."""
    arch = Arch.from_config(cfg)
    data = DataShape.from_lengths([64] * 10)
    spec = StepSpec(batch_size=4, gradient_checkpointing=False)

    def both(temp: float, adapter: float) -> list:
        monkeypatch.setitem(BACKWARD_TEMP_ROWS, "cpu", temp)
        monkeypatch.setitem(BACKWARD_ADAPTER_ROWS, "cpu", adapter)
        return [estimate_step(cfg, m, data, spec) for m in ("lora", "full", "ia3")]

    (lora0, full0, ia0), (lora1, full1, _), (lora2, full2, ia2) = both(0, 0), both(50, 0), both(0, 3)
    rows = lora0.tokens * 4
    assert lora1.phases["backward"] - lora0.phases["backward"] == 50 * rows * (arch.hidden + arch.intermediate)
    # LoRA on every linear: q, k, v, o, gate and up read hidden-wide inputs, down the intermediate
    assert lora2.phases["backward"] - lora0.phases["backward"] == 3 * rows * (6 * arch.hidden + arch.intermediate)
    assert full2.phases == full0.phases  # no LoRA-style modules
    # IA3 (PEFT's Llama default): k and v scale their outputs, down_proj its intermediate-wide input
    assert ia2.phases["backward"] - ia0.phases["backward"] == 3 * rows * (2 * arch.kv_dim + arch.intermediate)
    for est in (lora1, lora2):
        assert (est.phases["forward"], est.phases["optimizer"]) == (lora0.phases["forward"], lora0.phases["optimizer"])
    static = [est.peak_bytes - est.parts["runtime"] - max(est.phases.values()) for est in (lora0, lora1)]
    m = lora0.params
    assert static[0] == static[1] < m.frozen_bytes + m.trainable_bytes + m.optimizer_bytes  # frozen linears in bf16
    for full in (full0, full1):  # nothing frozen: the weights, their AdamW states, then the step's largest phase
        held = full.params.trainable_bytes + full.params.optimizer_bytes
        assert full.peak_bytes == held + max(full.phases.values()) + full.parts["runtime"]
    assert full0.peak_phase == "optimizer"  # gradients + AdamW temporaries of the largest tensor
    assert lora0.peak_phase == "forward" and lora1.peak_phase == "backward"
    assert lora1.peak_bytes - lora0.peak_bytes == lora1.phases["backward"] - lora0.phases["forward"] > 0


def test_prompt_learning_is_padded_and_its_loss_chunked(cfg):
    """Rows of 50 are padded to width 56 (PAD_WIDTH) instead of packed to 256; the loss is chunked as for ia3."""
    data = DataShape.from_lengths([50] * 10, loss_tokens=250)
    spec = StepSpec(batch_size=4, gradient_checkpointing=False)
    prefix, ia3 = (estimate_step(cfg, m, data, spec) for m in ("prefix", "ia3"))
    assert (prefix.tokens, ia3.tokens) == (4 * 56, 256) and prefix.filler_tokens == 0
    assert prefix.parts["loss"] == ia3.parts["loss"] == (cfg.vocab_size * 64 * 2 + 128 * cfg.vocab_size * 6
                                                         + 2 * 128 * 64 * 4)  # 100 loss rows -> 128
    full = estimate_step(cfg, "prefix", data, replace(spec, chunked_loss=False))  # DPO-style: the model's loss
    assert full.parts["loss"] == 4 * 56 * cfg.vocab_size * 14


def test_sizes_and_durations():
    assert parse_size("24GB") == 24 and parse_size("512MB") == 0.512 and parse_size("16") == 16
    assert parse_duration("2h") == 7200 and parse_duration("90m") == 5400
    with pytest.raises(ValueError, match="--memory"):
        parse_size("lots")


@pytest.mark.parametrize("goal", ["task", "style", "knowledge", "chat", "alignment", "reasoning"])
def test_recipes_for_every_goal_validate(tmp_path, tiny_model_dir, chat_file, goal):
    recipes = plan(goal, str(tiny_model_dir), str(chat_file), "lora", {}, 4, 128, str(tmp_path / "index"))
    written = write_recipes(tmp_path / "advice", recipes)
    assert written and all(load_recipe(w.path) for w in written)
    if goal == "knowledge":
        assert [load_recipe(w.path).method.name for w in written] == ["none", "lora"]
    if goal == "chat":
        assert [load_recipe(w.path).objective.name for w in written] == ["sft", "dpo"]


def test_bad_inputs_get_answers(tiny_model_dir, chat_file, tmp_path):
    with pytest.raises(ModelLoadError, match="not an alias"):
        advise("no-such-model", str(chat_file), "task")
    with pytest.raises(FileNotFoundError, match="neither a file"):
        advise(str(tiny_model_dir), str(tmp_path / "missing.jsonl"), "task")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        advise(str(tiny_model_dir), str(bad), "task")
    a = advise(str(tiny_model_dir), str(chat_file), "task", memory_gb=0.001)
    assert a.method == "none" and "".join(a.walk.path).endswith("N")
    assert any(n.startswith("nothing fits in 0 GB; smallest option is") and "consider RAG/ICL" in n
               for n in a.notes)


def test_advice_numbers(tiny_model_dir, chat_file):
    a = advise(str(tiny_model_dir), str(chat_file), "task", memory_gb=8, time_s=1e-6, batch_size=4, few_shot_k=2)
    assert a.method == "lora" and a.data.shape.rows == 24
    few = next(n for n in a.notes if n.startswith("tokens per request"))
    assert "2-shot" in few
    assert any("24 training rows is little for lora" in n for n in a.notes)
    assert any("over the --time budget" in n for n in a.notes)
    lora = next(r for r in a.rows if r.method == "lora")
    assert lora.fits and lora.epoch_seconds > 0


def test_cli_advise_end_to_end(tiny_model_dir, chat_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    out = tmp_path / "advice"
    res = runner.invoke(app, ["advise", "--model", str(tiny_model_dir), "--data", str(chat_file), "--goal", "chat",
                              "--memory", "4GB", "--batch-size", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "decision map" in res.output and "recommended: lora" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["lora-dpo.yaml", "lora-sft.yaml"]
    # runs as written, 2 steps: the auto budget it leaves on is trained end to end in test_defaults.py
    res = runner.invoke(app, ["train", str(out / "lora-sft.yaml"), "train.max_steps=2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "advice-lora-sft" / "adapter").is_dir()
    res = runner.invoke(app, ["advise", "--model", str(tiny_model_dir), "--data", str(chat_file), "--goal", "chat",
                              "--format", "mermaid", "--out", str(out)])
    assert res.exit_code == 0 and res.output.startswith("flowchart TD") and "class A,B" in res.output
    res = runner.invoke(app, ["advise", "--model", "nope", "--data", str(chat_file)])
    assert res.exit_code == 2 and "nope" in res.output


def test_measure_runs_real_steps(tiny_model_dir, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": str(i)}]}
            for i in range(12)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    from ftatlas.advise.probes import dry_run

    got = dry_run({"model": {"name": str(tiny_model_dir)}, "data": {"train": str(data), "eval_split": 0.0},
                   "method": {"name": "lora", "r": 4}, "train": {"batch_size": 4, "precision": "fp32"}}, steps=2)
    assert "error" not in got, got
    assert got["steps"] == 2 and got["delta_bytes"] > 0 and got["tokens_per_s"] > 0


def test_device_rates_time_the_fastest_window():
    """A slow moment (another job on the machine) slows one window; the rate comes from the fastest one."""
    import time

    from ftatlas.advise.probes import _time

    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.004 if len(calls) <= 12 else 0.001)  # warm-up and the first window run slowly

    per_call = _time(fn, "cpu", windows=3, min_seconds=0.02)
    assert 0.001 <= per_call < 0.002 and len(calls) > 12
