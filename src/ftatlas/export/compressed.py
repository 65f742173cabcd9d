"""``--to gptq`` and ``--to awq``: 4-bit (or 8-bit) weight-only checkpoints made by llmcompressor's ``oneshot``
(GPTQ / AWQ calibrated on the run's own training prompts), saved in the compressed-tensors format that
transformers (and vLLM) load. The parity check reloads the saved folder with a plain ``from_pretrained``.

Calibration uses the run's training split (never its held-out rows): each row's templated prompt and answer.
GPTQ runs on CPU as well as CUDA; AWQ (llmcompressor 0.14) needs a CUDA GPU and says so on CPU.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoModelForCausalLM

from ftatlas.data.splits import load_splits
from ftatlas.data.templating import render_prompt
from ftatlas.export.formats import Artifact, Consumer, Exporter, TransformersConsumer, register
from ftatlas.export.safetensors import save_model_dir
from ftatlas.export.source import ExportError, Source
from ftatlas.extras import missing_package, require
from ftatlas.models.device import resolve_device
from ftatlas.objectives import OBJECTIVES

CALIBRATION_ROWS = 64  # GPTQ/AWQ statistics; llmcompressor's examples use 256-512 for 7B models
AWQ_NEEDS_CUDA = ("--to awq needs a CUDA GPU (llmcompressor's AWQ pins its cache in accelerator memory); "
                  "on CPU use --to gptq")
GROUP_SIZES = (128, 64, 32)  # one scale per this many inputs; the largest that divides every layer's width


def group_size(model: torch.nn.Module) -> int:
    """128 (the usual GPTQ/AWQ group) where it divides every quantized layer's input width, else 64 or 32:
    SmolLM2-135M is 576 wide (4.5 x 128), and llmcompressor needs whole groups."""
    widths = {m.in_features for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    for g in GROUP_SIZES:
        if all(w % g == 0 for w in widths):
            return g
    raise ExportError(f"no group size in {GROUP_SIZES} divides the layer widths {sorted(widths)}")


def scheme_config(bits: int, symmetric: bool, group: int) -> dict[str, Any]:
    """llmcompressor ``config_groups``: weight-only int ``bits`` with one scale per ``group`` inputs (A16)."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    weights = QuantizationArgs(num_bits=bits, type="int", strategy="group", group_size=group, symmetric=symmetric)
    return {"group_0": QuantizationScheme(targets=["Linear"], weights=weights)}


def calibration_texts(src: Source, n: int = CALIBRATION_ROWS) -> list[str]:
    """The run's first ``n`` training rows, templated as it trained on them (prompt + answer)."""
    objective = OBJECTIVES.get(src.recipe.objective.name)()
    rows = objective.eval_rows(load_splits(src.recipe.data, objective.data_kind).train)[:n]
    texts = []
    for row in rows:
        prompt, answer = row.prompt_and_reference()
        texts.append(render_prompt(src.tokenizer, prompt) + answer)
    if not texts:
        raise ExportError(f"{src.run.path}: the run's training split has no rows to calibrate on")
    return texts


class _LlmCompressor(Exporter):
    consumer = "transformers"
    default_quant = "w4a16"
    schemes: ClassVar[dict[str, tuple[int, bool]]] = {}  # --quant -> (weight bits, symmetric)

    def quants(self) -> list[str]:
        return list(self.schemes)

    def unavailable(self) -> str | None:
        return (missing_package("llmcompressor", "gptq", f"--to {self.name}")
                or missing_package("compressed_tensors", "gptq", f"--to {self.name}"))

    def check(self, quant: str | None) -> str | None:
        require("llmcompressor", "gptq", f"--to {self.name}")  # before the model loads
        require("compressed_tensors", "gptq", f"--to {self.name}")
        return super().check(quant)

    def modifier(self, groups: dict[str, Any]) -> Any:
        raise NotImplementedError

    def write(self, src: Source, out: Path, quant: str | None) -> Artifact:
        from datasets import Dataset
        from llmcompressor import oneshot

        bits, symmetric = self.schemes[quant or self.default_quant]
        device = resolve_device("auto")
        texts = calibration_texts(src)
        max_len = src.recipe.data.max_length
        out.mkdir(parents=True, exist_ok=True)
        target = out / "model"
        with tempfile.TemporaryDirectory(dir=out, prefix=".fp-") as tmp:
            plain = save_model_dir(src, Path(tmp) / "model", torch.float32)
            model = AutoModelForCausalLM.from_pretrained(plain, dtype=torch.float32, device_map={"": device})
            enc = src.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_len)
            data = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
            group = group_size(model)
            oneshot(model=model, processor=src.tokenizer, dataset=data, max_seq_length=max_len,
                    recipe=self.modifier(scheme_config(bits, symmetric, group)), num_calibration_samples=len(texts))
            staged = Path(tempfile.mkdtemp(dir=out, prefix=".model-"))
            model.save_pretrained(staged, save_compressed=True)
            src.tokenizer.save_pretrained(staged)
            del model
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
        return Artifact(target, [target], {"bits": bits, "group_size": group, "symmetric": symmetric,
                                           "device": device, "calibration_rows": len(texts)})

    def open(self, artifact: Artifact, src: Source) -> Consumer:
        return TransformersConsumer(AutoModelForCausalLM.from_pretrained(
            artifact.path, device_map={"": artifact.notes["device"]}))


@register("gptq")
class Gptq(_LlmCompressor):
    summary = "GPTQ weight-only int (w4a16 | w8a16, groups of 128/64/32) via llmcompressor, for transformers"
    schemes = {"w4a16": (4, True), "w8a16": (8, True)}

    def modifier(self, groups: dict[str, Any]) -> Any:
        from llmcompressor.modifiers.quantization import GPTQModifier

        return GPTQModifier(config_groups=groups, ignore=["lm_head"])


@register("awq")
class Awq(_LlmCompressor):
    summary = "AWQ weight-only int4 (asymmetric, groups of 128/64/32) via llmcompressor, for transformers"
    schemes = {"w4a16": (4, False)}

    def unavailable(self) -> str | None:
        if resolve_device("auto") != "cuda":
            return AWQ_NEEDS_CUDA
        return super().unavailable()

    def check(self, quant: str | None) -> str | None:
        # llmcompressor's AWQ pins its cached activations in page-locked memory for each smoothing grid search,
        # and pinning needs an accelerator ("Cannot access accelerator device when none is available" on CPU)
        if resolve_device("auto") != "cuda":
            raise ExportError(AWQ_NEEDS_CUDA)
        return super().check(quant)

    def modifier(self, groups: dict[str, Any]) -> Any:
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        # AWQ only rescales channels (mappings from the architecture); the quantization modifier then rounds
        return [AWQModifier(), QuantizationModifier(config_groups=groups, ignore=["lm_head"])]
