"""The llama.cpp backend: a ``.gguf`` file (an ``ftatlas export`` result) served through ``llama-cpp-python``.

The prompt is still rendered by ftatlas with the tokenizer read from the same GGUF (the template the model
carries), so a chat request becomes the same text as with the transformers backend; llama.cpp then runs it
on its own quantized kernels. Requests run one after another (llama.cpp's Python binding has no batched
decoding); each streams token by token and stops when its client leaves.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def load_llama(path: str | Path, n_ctx: int = 4096, threads: int | None = None) -> Any:
    """A ``llama_cpp.Llama`` over the GGUF file (quiet; ``n_ctx`` tokens of context)."""
    if not llama_cpp_available():
        raise ValueError(f"{path}: the llama.cpp backend needs llama-cpp-python (pip install llama-cpp-python); "
                         "or serve it with --backend transformers")
    from llama_cpp import Llama

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such GGUF file")
    return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False)


def run_jobs(llm: Any, jobs: list[Any]) -> None:
    """Answer each job in turn, emitting its text as llama.cpp produces it."""
    for job in jobs:
        d = job.decode
        stream = llm.create_completion(
            job.prompt, max_tokens=job.max_tokens, temperature=d.temperature if d.do_sample else 0.0,
            top_p=d.top_p, top_k=d.top_k, repeat_penalty=d.repetition_penalty, stop=job.stop or None,
            seed=d.seed, stream=True)
        reason = "length"
        for chunk in stream:
            if job.cancelled.is_set():
                reason = "cancelled"
                break
            if job.deadline is not None and time.monotonic() > job.deadline:
                reason = "timeout"
                break
            choice = chunk["choices"][0]
            if choice["text"]:
                job.text += choice["text"]
                job.emit(("delta", choice["text"]))
            reason = choice.get("finish_reason") or reason
        stream.close()
        job.tokens = llm.tokenize(job.text.encode(), add_bos=False, special=False) if job.text else []
        job.finish = reason
        if reason != "cancelled":
            job.emit(("done", reason))
