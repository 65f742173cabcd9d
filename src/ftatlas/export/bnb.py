"""``--to bnb-4bit`` (NF4/FP4) and ``--to bnb-8bit`` (LLM.int8): bitsandbytes checkpoints for transformers.

The merged model is quantized by transformers' bitsandbytes integration as it loads, saved with its
``quantization_config``, and reloaded from disk for the parity check (``from_pretrained`` alone restores it).
bitsandbytes >= 0.46 runs both on CPU as well as CUDA.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from ftatlas.export.formats import Artifact, Consumer, Exporter, TransformersConsumer, register
from ftatlas.export.safetensors import save_model_dir
from ftatlas.export.source import ExportError, Source
from ftatlas.methods.qlora import require_bitsandbytes
from ftatlas.models.device import resolve_device


class _Bnb(Exporter):
    consumer = "transformers"
    bits: ClassVar[int]
    compute_dtype: ClassVar[torch.dtype] = torch.bfloat16

    def config(self, quant: str | None) -> BitsAndBytesConfig:
        raise NotImplementedError

    def unavailable(self) -> str | None:
        try:
            require_bitsandbytes(resolve_device("auto"))
        except ValueError as e:
            return str(e).replace("method qlora", f"--to {self.name}")
        return None

    def write(self, src: Source, out: Path, quant: str | None) -> Artifact:
        device = resolve_device("auto")
        reason = self.unavailable()
        if reason:
            raise ExportError(reason)
        out.mkdir(parents=True, exist_ok=True)
        target = out / "model"
        with tempfile.TemporaryDirectory(dir=out, prefix=".fp-") as tmp:
            plain = save_model_dir(src, Path(tmp) / "model", torch.float32)
            model = AutoModelForCausalLM.from_pretrained(plain, quantization_config=self.config(quant),
                                                         device_map={"": device}, dtype=self.compute_dtype)
            staged = Path(tempfile.mkdtemp(dir=out, prefix=".model-"))
            model.save_pretrained(staged)
            src.tokenizer.save_pretrained(staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
        return Artifact(target, [target], {"bits": self.bits, "device": device, **({"quant_type": quant} if quant
                                                                                  else {})})

    def open(self, artifact: Artifact, src: Source) -> Consumer:
        device = artifact.notes["device"]
        return TransformersConsumer(AutoModelForCausalLM.from_pretrained(artifact.path, device_map={"": device}))


@register("bnb-4bit")
class Bnb4(_Bnb):
    summary = "bitsandbytes 4-bit (nf4 | fp4, double-quantized, bf16 compute) for transformers"
    bits = 4
    default_quant = "nf4"

    def quants(self) -> list[str]:
        return ["nf4", "fp4"]

    def config(self, quant: str | None) -> BitsAndBytesConfig:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant or "nf4",
                                  bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)


@register("bnb-8bit")
class Bnb8(_Bnb):
    summary = "bitsandbytes LLM.int8 (8-bit weights, outliers in 16-bit) for transformers"
    bits = 8
    compute_dtype = torch.float16  # LLM.int8 casts its inputs to fp16 anyway (and warns on every call otherwise)

    def config(self, quant: str | None) -> BitsAndBytesConfig:
        return BitsAndBytesConfig(load_in_8bit=True)
