"""llama.cpp as converter, quantizer and consumer: its own ``convert_hf_to_gguf.py`` /
``convert_lora_to_gguf.py`` (with the gguf-py they ship with), ``llama_model_quantize`` and ``Llama``
through llama-cpp-python. ``scripts/install_llama_cpp.sh`` builds the library (AMX off) and puts the
converters under ``<sys.prefix>/share/llama.cpp``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftatlas.export.source import ExportError
from ftatlas.recipe import DecodeSpec

INSTALL_HINT = "run scripts/install_llama_cpp.sh (builds llama-cpp-python from its sdist and installs the converters)"
# What llama.cpp's converter writes directly; every other quant is made from its f16 output by llama_model_quantize.
CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")


def converters_dir() -> Path:
    """Where llama.cpp's conversion scripts live: <sys.prefix>/share/llama.cpp (the install script puts them there)."""
    share = Path(sys.prefix) / "share" / "llama.cpp"
    if (share / "convert_hf_to_gguf.py").is_file() and (share / "gguf-py").is_dir():
        return share
    raise ExportError(f"llama.cpp's converters are not installed at {share}; {INSTALL_HINT}")


def llama_cpp_module() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise ExportError(f"GGUF export needs llama-cpp-python ({e}); {INSTALL_HINT}") from e
    return llama_cpp


def quant_types() -> list[str]:
    """Every quant name this llama.cpp build accepts (its LLAMA_FTYPE_MOSTLY_* constants, lower-cased)."""
    names = {n.removeprefix("LLAMA_FTYPE_MOSTLY_").lower() for n in dir(llama_cpp_module())
             if n.startswith("LLAMA_FTYPE_MOSTLY_")}
    return sorted(names | set(CONVERTER_TYPES))


def _run_script(script: str, args: list[str]) -> None:
    """Run one of llama.cpp's scripts with the gguf-py it shipped with (newer than a pinned `gguf` may be)."""
    root = converters_dir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "gguf-py"), str(root),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(root / script), *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ExportError(f"llama.cpp {script} failed (exit {proc.returncode}):\n{tail}")


def convert_model(model_dir: Path, out_file: Path, outtype: str) -> Path:
    """HF model dir -> GGUF with llama.cpp's converter (architecture, tokenizer and chat template included)."""
    if outtype not in CONVERTER_TYPES:
        raise ExportError(f"the converter writes {', '.join(CONVERTER_TYPES)}, not {outtype!r}")
    _run_script("convert_hf_to_gguf.py", [str(model_dir), "--outfile", str(out_file), "--outtype", outtype])
    return out_file


def convert_lora(adapter_dir: Path, base_dir: Path, out_file: Path, outtype: str = "f16") -> Path:
    """A peft LoRA adapter -> GGUF LoRA for llama.cpp's ``--lora`` (needs the base model's config)."""
    _run_script("convert_lora_to_gguf.py", [str(adapter_dir), "--base", str(base_dir), "--outfile", str(out_file),
                                            "--outtype", outtype])
    return out_file


def quantize(src: Path, dst: Path, quant: str, threads: int = 0) -> Path:
    """Quantize a GGUF with llama.cpp's own ``llama_model_quantize``."""
    lc = llama_cpp_module()
    ftype = getattr(lc, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise ExportError(f"unknown GGUF quant {quant!r}; this llama.cpp knows: {', '.join(quant_types())}")
    params = lc.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    rc = lc.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise ExportError(f"llama_model_quantize({src.name} -> {quant}) failed with code {rc}")
    return dst


def load(path: Path, n_ctx: int = 2048, logits_all: bool = False, lora: Path | None = None) -> Any:
    """Open a GGUF in llama.cpp (CPU threads = the cores this process may use)."""
    lc = llama_cpp_module()
    return lc.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, verbose=False, seed=0,
                    n_threads=len(os.sched_getaffinity(0)), lora_path=str(lora) if lora else None)


@dataclass
class Generator:
    """Answers rendered prompts with llama.cpp, tokenised by the run's own tokenizer (the same ids the run saw)."""

    llm: Any
    encode: Callable[[str], list[int]]
    decode: DecodeSpec
    generated_tokens: int = 0
    seconds: float = 0.0
    answers: list[str] = field(default_factory=list)

    def __call__(self, prompts: list[str]) -> list[str]:
        d = self.decode
        if d.num_beams > 1:
            raise ExportError("llama.cpp has no beam search; re-score a GGUF with eval.decode.num_beams=1")
        t0 = time.perf_counter()
        out = []
        for prompt in prompts:
            self.llm.reset()
            r = self.llm.create_completion(
                self.encode(prompt), max_tokens=d.max_new_tokens, temperature=d.temperature if d.do_sample else 0.0,
                top_k=d.top_k if d.do_sample else 1, top_p=d.top_p if d.do_sample else 1.0,
                repeat_penalty=d.repetition_penalty, seed=d.seed)
            self.generated_tokens += r["usage"]["completion_tokens"]
            out.append(r["choices"][0]["text"].strip())
        self.seconds += time.perf_counter() - t0
        return out


def logits(llm: Any, ids: list[int]) -> Any:
    """Logits at every position of ``ids`` (a float32 numpy array [len(ids), vocab]); needs ``logits_all``."""
    llm.reset()
    llm.eval(ids)
    return llm.scores[: len(ids)].copy()
