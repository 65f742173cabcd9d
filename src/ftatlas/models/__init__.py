"""Model loading: sources, tokenizers and chat templates, device and precision."""

from ftatlas.models.device import Precision, cpu_has_bf16, resolve_device, resolve_precision
from ftatlas.models.loading import (
    DEFAULT_MODEL,
    Loaded,
    ModelLoadError,
    load_model,
    load_tokenizer,
    require_chat_template,
    resolve_source,
)

__all__ = [
    "DEFAULT_MODEL", "Loaded", "ModelLoadError", "Precision", "cpu_has_bf16", "load_model",
    "load_tokenizer", "require_chat_template", "resolve_device", "resolve_precision", "resolve_source",
]
