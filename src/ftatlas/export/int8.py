"""``--to int8``: torchao weight-only int8 (per-row scales) for transformers consumers.

transformers' torchao integration quantizes the merged model's linear layers as it loads
(``TorchAoConfig(Int8WeightOnlyConfig())``); ``save_pretrained`` writes the int8 tensors as safetensors with the
``quantization_config``, so ``AutoModelForCausalLM.from_pretrained`` alone restores it (torchao installed).
The embeddings (and a tied lm_head) stay in bf16, as transformers' torchao default keeps them.
Runs on CPU and CUDA.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, TorchAoConfig

from ftatlas.export.formats import Artifact, Consumer, Exporter, TransformersConsumer, register
from ftatlas.export.safetensors import save_model_dir
from ftatlas.export.source import Source
from ftatlas.extras import missing_package, require
from ftatlas.models.device import resolve_device


def int8_config() -> TorchAoConfig:
    quant = require("torchao.quantization", "quant", "--to int8 (torchao weight-only int8)")
    return TorchAoConfig(quant.Int8WeightOnlyConfig())


@register("int8")
class Int8(Exporter):
    summary = "torchao weight-only int8 (per-row scales, bf16 compute) for transformers"
    consumer = "transformers"
    # max |logit diff| / max |logit| vs the fp32 source: per-row int8 weights plus bf16 activations. Measured
    # 0.089 on the SmolLM2-135M quickstart run (91.7% argmax agreement, the run's json_match) where bf16 alone is
    # 0.069, and ~0.006 on the tiny test model; an export bug moves logits by a large share of their range.
    tolerances = {"": 0.15}

    def unavailable(self) -> str | None:
        return missing_package("torchao", "quant", "--to int8")

    def check(self, quant: str | None) -> str | None:
        int8_config()  # a missing torchao fails before the model loads
        return super().check(quant)

    def write(self, src: Source, out: Path, quant: str | None) -> Artifact:
        config = int8_config()
        device = resolve_device("auto")
        out.mkdir(parents=True, exist_ok=True)
        target = out / "model"
        with tempfile.TemporaryDirectory(dir=out, prefix=".fp-") as tmp:
            plain = save_model_dir(src, Path(tmp) / "model", torch.float32)
            model = AutoModelForCausalLM.from_pretrained(plain, quantization_config=config,
                                                         device_map={"": device}, dtype=torch.bfloat16)
            staged = Path(tempfile.mkdtemp(dir=out, prefix=".model-"))
            model.save_pretrained(staged)
            src.tokenizer.save_pretrained(staged)
            del model
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
        return Artifact(target, [target], {"bits": 8, "device": device, "scheme": "torchao Int8WeightOnlyConfig"})

    def open(self, artifact: Artifact, src: Source) -> Consumer:
        return TransformersConsumer(AutoModelForCausalLM.from_pretrained(
            artifact.path, device_map={"": artifact.notes["device"]}))
