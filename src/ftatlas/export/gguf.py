"""``--to gguf --quant f16|bf16|q8_0|q4_k_m|...``: llama.cpp's converter, then its quantizer, checked in llama.cpp.

Besides ``model-<quant>.gguf`` the folder gets, for LoRA runs, ``adapter-f16.gguf`` (llama.cpp ``--lora``
on the base), and an Ollama ``Modelfile`` carrying the run's chat template, system prompt and stop tokens.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ftatlas.export import llama_cpp
from ftatlas.export.formats import Artifact, Consumer, Exporter, register
from ftatlas.export.modelfile import write_modelfile
from ftatlas.export.safetensors import save_model_dir
from ftatlas.export.source import ExportError, Source
from ftatlas.recipe import DecodeSpec

# listed first (in pickers and messages): the converter's own types, then the k-quants most people ship
COMMON_QUANTS = ("q8_0", "f16", "bf16", "f32", "q4_k_m", "q5_k_m", "q6_k")
MAX_CTX = 4096  # llama.cpp context for the re-score (its KV cache is allocated up front)


class LlamaCppConsumer(Consumer):
    name = "llama.cpp"

    def __init__(self, path: Path, encode: Callable[[str], list[int]], n_ctx: int) -> None:
        self.path, self.encode, self.n_ctx = path, encode, n_ctx
        self.llm = llama_cpp.load(path, n_ctx=n_ctx, logits_all=True)

    def logits(self, ids: list[int]) -> torch.Tensor:
        return torch.from_numpy(llama_cpp.logits(self.llm, ids))

    def generator(self, decode: DecodeSpec) -> llama_cpp.Generator:
        return llama_cpp.Generator(self.llm, self.encode, decode)

    def close(self) -> None:
        self.llm.close()


def _lora_gguf(src: Source, out: Path) -> Path | None:
    """The run's LoRA adapter as a GGUF LoRA, when it is a plain LoRA over a base llama.cpp can read."""
    if src.adapter_dir is None or src.recipe.method.name != "lora":
        return None
    base = Path(src.base_source)
    if not (base / "config.json").is_file():
        return None  # a hub id: the converter would need the network
    return llama_cpp.convert_lora(src.adapter_dir, base, out / "adapter-f16.gguf")


@register("gguf")
class Gguf(Exporter):
    summary = "llama.cpp / Ollama GGUF (converter types f32|f16|bf16|q8_0, any llama.cpp quant after that)"
    consumer = "llama.cpp"
    default_quant = "q8_0"
    # max |logit diff| / max |logit| vs the fp32 source; k-quants and other low-bit types have no bound here:
    # the held-out metric and its interval judge them. q8_0 on SmolLM2-135M: 0.064 on the quickstart run (97% argmax
    # agreement) and 0.145 on a 30-step contacts LoRA (94%, bf16 alone 0.085), both with the run's held-out metric,
    # so its bound is 0.2; half precision gets 0.15. A broken export (tensor, template, tokenizer) lands near 1.
    tolerances = {"f32": 1e-3, "f16": 0.15, "bf16": 0.15, "q8_0": 0.2}

    def quants(self) -> list[str]:
        known = llama_cpp.quant_types()
        return [q for q in COMMON_QUANTS if q in known] + [q for q in known if q not in COMMON_QUANTS]

    def unavailable(self) -> str | None:
        try:
            llama_cpp.llama_cpp_module()
            llama_cpp.converters_dir()
        except ExportError as e:
            return str(e)
        return None

    def write(self, src: Source, out: Path, quant: str | None) -> Artifact:
        quant = quant or self.default_quant
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"model-{quant}.gguf"
        with tempfile.TemporaryDirectory(dir=out, prefix=".hf-") as tmp:
            hf = save_model_dir(src, Path(tmp) / "model", torch.float32)  # the converter casts from full precision
            if quant in llama_cpp.CONVERTER_TYPES:
                llama_cpp.convert_model(hf, target.with_suffix(".tmp"), quant)
            else:  # llama.cpp quantizes from its own f16 file, as its README does
                f16 = llama_cpp.convert_model(hf, Path(tmp) / "model-f16.gguf", "f16")
                llama_cpp.quantize(f16, target.with_suffix(".tmp"), quant)
        target.with_suffix(".tmp").replace(target)
        files, notes = [target], {"quant": quant}
        lora = _lora_gguf(src, out)
        if lora is not None:
            files.append(lora)
            notes["lora_gguf"] = str(lora)
        modelfile = write_modelfile(out / "Modelfile", target, src)
        files.append(modelfile)
        notes["modelfile"] = str(modelfile)
        return Artifact(target, files, notes)

    def open(self, artifact: Artifact, src: Source) -> Consumer:
        tok = src.tokenizer
        n_ctx = min(getattr(src.model.config, "max_position_embeddings", None) or MAX_CTX, MAX_CTX)
        return LlamaCppConsumer(artifact.path, lambda text: tok(text, add_special_tokens=False)["input_ids"], n_ctx)

