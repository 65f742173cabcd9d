"""Gradient accumulation and the fast-path recipe fields: (batch 8, accum 1) and (batch 2, accum 4) agree."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from ftatlas.methods import METHODS
from ftatlas.models.accel import AcceleratorUnavailable
from ftatlas.objectives import OBJECTIVES, TrainContext
from ftatlas.pipeline import prepare
from ftatlas.recipe import RecipeError
from ftatlas.resolve import build_recipe
from tests.conftest import tiny_recipe, write_jsonl


class GradCapture(TrainerCallback):
    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):  # noqa: ANN001
        self.grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


@pytest.fixture
def uneven_file(tmp_path):
    """8 rows whose answers carry 1 to ~40 loss tokens: per-micro-batch means would weight them unequally."""
    rows = [{"messages": [{"role": "user", "content": f"Repeat {k} times"},
                          {"role": "assistant", "content": " ".join(["echo"] * (1 + 5 * k))}]} for k in range(8)]
    return write_jsonl(tmp_path / "uneven.jsonl", rows)


def first_step_grads(tiny_model_dir, tmp_path, data, batch: int, accum: int, method: str = "full",
                     **train) -> dict[str, torch.Tensor]:
    recipe = build_recipe(tiny_recipe(
        tiny_model_dir, tmp_path, data={"builtin": None, "train": str(data), "eval_split": 0.0, "max_train": None},
        method={"name": method} | ({"dropout": 0.0} if method == "lora" else {}),
        train={"max_steps": 1, "batch_size": batch, "grad_accum": accum, "max_grad_norm": 1e9, "warmup": 0,
               **train},
        output={"name": f"b{batch}a{accum}", "overwrite": True}))
    s = prepare(recipe, progress=False)
    model = METHODS.get(method)().apply(s.loaded.model, recipe.method_params())
    trainer = OBJECTIVES.get("sft")().build(TrainContext(recipe, model, s.loaded.tokenizer, s.splits.train, [],
                                                          s.run, s.device, s.precision, False))
    capture = GradCapture()
    trainer.add_callback(capture)
    trainer.train()
    return capture.grads[0]


@pytest.mark.parametrize("fast", [True, False], ids=["packed-chunked", "padded-plain"])
def test_same_gradient_for_batch8_accum1_and_batch2_accum4(tiny_model_dir, tmp_path, uneven_file, fast):
    opts = {} if fast else {"packing": "off", "chunked_loss": False}
    one = first_step_grads(tiny_model_dir, tmp_path, uneven_file, 8, 1, **opts)
    four = first_step_grads(tiny_model_dir, tmp_path, uneven_file, 2, 4, **opts)
    assert one.keys() == four.keys() and one
    for k in one:
        torch.testing.assert_close(four[k], one[k], rtol=1e-4, atol=1e-7, msg=k)


def test_packed_chunked_gradient_equals_padded_plain(tiny_model_dir, tmp_path, uneven_file):
    fast = first_step_grads(tiny_model_dir, tmp_path, uneven_file, 4, 2)
    plain = first_step_grads(tiny_model_dir, tmp_path, uneven_file, 4, 2, packing="off", chunked_loss=False)
    for k in plain:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-4, atol=1e-7, msg=k)


def test_recipe_speed_fields_validate(tiny_model_dir, tmp_path):
    r = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"packing": "best_fit", "pack_tokens": 512}))
    assert r.train.packing == "best_fit" and r.train.chunked_loss and r.train.loss_chunk == 256
    with pytest.raises(RecipeError, match="train.packing"):
        build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"packing": "greedy"}))
    with pytest.raises(RecipeError, match="train.loss_chunk"):
        build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"loss_chunk": 0}))


@pytest.mark.parametrize(("field", "value", "needs"), [("optim", "paged_adamw_8bit", "needs CUDA"),
                                                        ("liger", True, "needs CUDA")])
def test_cuda_only_options_say_so_on_cpu(tiny_model_dir, tmp_path, uneven_file, field, value, needs):
    with pytest.raises(AcceleratorUnavailable, match=needs):
        first_step_grads(tiny_model_dir, tmp_path, uneven_file, 8, 1, **{field: value})


def test_best_fit_training_runs_with_token_budget(tiny_model_dir, tmp_path, uneven_file):
    grads = first_step_grads(tiny_model_dir, tmp_path, uneven_file, 8, 1, packing="best_fit", pack_tokens=64)
    assert grads and all(torch.isfinite(g).all() for g in grads.values())


def test_lora_under_bf16_autocast_trains_with_frozen_bf16_base(tiny_model_dir, tmp_path, uneven_file):
    """The chunked loss calls the decoder directly, so it must enter autocast itself (bf16 frozen weights need it)."""
    fast = first_step_grads(tiny_model_dir, tmp_path, uneven_file, 4, 1, "lora", precision="bf16")
    plain = first_step_grads(tiny_model_dir, tmp_path, uneven_file, 4, 1, "lora", precision="bf16",
                             packing="off", chunked_loss=False, frozen_half=False)
    assert fast.keys() == plain.keys() and fast
    for k in plain:  # bf16 matmuls summed in different orders: compare whole tensors, not elements
        assert (fast[k] - plain[k]).norm() <= 0.03 * plain[k].norm() + 1e-8, k
