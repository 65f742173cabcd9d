"""`ftatlas train` under torchrun: 2 processes x batch 4 (gloo, CPU) against 1 process x batch 8 -- the same loss
curve and the same final weights, for DDP and for FSDP2 (LoRA and full); rank 0 alone writes the run dir. Presets and
what is GPU-only."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ftatlas.distributed import preset
from ftatlas.pipeline import train
from ftatlas.recipe import build_recipe
from ftatlas.resolve import load_recipe
from tests.conftest import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


def _recipe_file(tmp_path: Path, model_dir: Path, chat_file: Path, **train) -> Path:
    r = tiny_recipe(model_dir, tmp_path / "runs", train=train)
    r["method"] = {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0}  # dropout masks depend on the process layout
    # 24 rows = 3 global batches of 8: no short last batch (a process would pad its shard from the start)
    r["data"] = {"train": str(chat_file), "eval": str(chat_file), "max_length": 64}
    r["eval"] = {"max_examples": 2, "batch_size": 2, "decode": {"max_new_tokens": 4}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def _train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1",
                        "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    file = run / "adapter" / "adapter_model.safetensors"
    return load_file(file if file.is_file() else run / "model" / "model.safetensors")


@pytest.mark.parametrize(("distributed", "packing", "method"), [
    ("ddp", "padding_free", "lora"), ("ddp", "off", "lora"),
    ("fsdp", "padding_free", "lora"), ("fsdp", "off", "full")])  # FSDP2 over gloo: our CPU path past accelerate
def test_two_processes_match_one_on_the_same_global_batch(tiny_model_dir, chat_file, tmp_path, distributed, packing,
                                                          method):
    recipe = _recipe_file(tmp_path, tiny_model_dir, chat_file, max_steps=3, batch_size=8, packing=packing,
                          warmup=0, scheduler="constant", lr=1e-2 if method == "lora" else 1e-3)
    if method == "full":
        r = yaml.safe_load(recipe.read_text())
        r["method"] = {"name": "full"}
        recipe.write_text(yaml.safe_dump(r))
    train(load_recipe(recipe, ["output.name=one"]), progress=False)  # the reference: one process, in this one
    two = _train(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ftatlas.cli",
                  "train", str(recipe), "output.name=two", "train.batch_size=4", f"train.distributed={distributed}"],
                 tmp_path)
    one_dir, two_dir = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    assert len(_losses(two_dir)) == 3  # one metrics line per step: rank 1 wrote nothing
    assert _losses(two_dir) == pytest.approx(_losses(one_dir), rel=1e-4)
    a, b = _weights(one_dir), _weights(two_dir)
    assert a.keys() <= b.keys() and set(b) - set(a) <= {"lm_head.weight"}  # FSDP's full state dict keeps tied keys
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
    info = json.loads((two_dir / "distributed.json").read_text())
    assert info["world_size"] == 2 and info["training_arguments"]["ddp_backend"] == "gloo"
    shard, total = (int(n) for n in info["sharded_parameters"].split(" of "))
    if distributed == "fsdp":  # what ran, not only what was asked: every parameter a DTensor shard
        assert info["engine"] == "FSDP" and info["wrapper"].startswith("FSDP") and shard == total > 0
    else:
        assert info["engine"] == "MULTI_CPU" and info["wrapper"] == "DistributedDataParallel" and shard == 0
    assert (two_dir / "eval.json").is_file() and two.stdout.count("run directory:") == 1  # rank 0 reports


def test_streamed_source_under_ddp_matches_one_process(tiny_model_dir, chat_file, tmp_path):
    """streaming: true under 2 processes: each reads the stream and keeps its share of every global batch."""
    import datasets

    rows = [json.loads(line)["messages"] for line in chat_file.read_text().splitlines()]
    parquet = tmp_path / "rows.parquet"
    datasets.Dataset.from_list([{"q": m[0]["content"], "a": m[1]["content"]} for m in rows]).to_parquet(str(parquet))
    recipe = _recipe_file(tmp_path, tiny_model_dir, chat_file, max_steps=3, batch_size=8, packing="padding_free",
                          warmup=0, scheduler="constant", lr=1e-2)
    r = yaml.safe_load(recipe.read_text())
    r["data"]["train"] = {"path": str(parquet), "streaming": True, "columns": {"instruction": "q", "output": "a"}}
    recipe.write_text(yaml.safe_dump(r))
    train(load_recipe(recipe, ["output.name=one"]), progress=False)
    _train(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ftatlas.cli", "train",
            str(recipe), "output.name=two", "train.batch_size=4", "train.distributed=ddp"], tmp_path)
    one_dir, two_dir = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    assert len(_losses(one_dir)) == 3 and _losses(two_dir) == pytest.approx(_losses(one_dir), rel=1e-4)
    a, b = _weights(one_dir), _weights(two_dir)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


GPUS = torch.cuda.device_count()


@pytest.mark.gpu
@pytest.mark.skipif(GPUS < 2 or importlib.util.find_spec("deepspeed") is None,
                    reason=f"DeepSpeed ZeRO through the Trainer needs >= 2 CUDA GPUs and deepspeed ({GPUS} GPUs here)")
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_zero_on_two_gpus_matches_one_process(tiny_model_dir, chat_file, tmp_path, zero):
    recipe = _recipe_file(tmp_path, tiny_model_dir, chat_file, max_steps=3, batch_size=8, packing="off",
                          warmup=0, scheduler="constant", lr=1e-2)
    train(load_recipe(recipe, ["output.name=one"]), progress=False)
    _train(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "ftatlas.cli", "train",
            str(recipe), "output.name=two", "train.batch_size=4", f"train.distributed={zero}"], tmp_path)
    one_dir, two_dir = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    assert _losses(two_dir) == pytest.approx(_losses(one_dir), rel=1e-3)
    a, b = _weights(one_dir), _weights(two_dir)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4)
    assert json.loads((two_dir / "distributed.json").read_text())["engine"] == "DEEPSPEED"


def test_presets_and_gpu_only_engines(tiny_model_dir, tmp_path, monkeypatch):
    fsdp_recipe = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"distributed": "fsdp"}))
    fsdp = preset(fsdp_recipe, "cuda")
    assert fsdp["fsdp"] is True and fsdp["fsdp_config"]["version"] == 2
    with pytest.raises(ValueError, match=r"fsdp shards the model across processes and this is one CPU process: "
                                         r"start it with torchrun --nproc_per_node N"):
        preset(fsdp_recipe, "cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert preset(fsdp_recipe, "cpu") | {"fsdp_config": None} == {
        "ddp_find_unused_parameters": False, "ddp_backend": "gloo", "fsdp": True, "fsdp_config": None}
    monkeypatch.delenv("WORLD_SIZE")
    zero3 = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"distributed": "zero3"}))
    with pytest.raises(ValueError, match="zero3: DeepSpeed ZeRO runs on CUDA GPUs only"):
        preset(zero3, "cpu")
    own = tmp_path / "fsdp.yaml"
    own.write_text("version: 2\nreshard_after_forward: false\n")
    mine = preset(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={
        "distributed": "fsdp", "distributed_config": str(own)})), "cuda")
    assert mine["fsdp_config"] == {"version": 2, "reshard_after_forward": False}
    with pytest.raises(ValueError, match="distributed_config: .*missing.json does not exist"):
        preset(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={
            "distributed": "fsdp", "distributed_config": str(tmp_path / "missing.json")})), "cuda")
