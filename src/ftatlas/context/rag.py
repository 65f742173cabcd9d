"""``rag``: retrieve passages for the question from an index and put them, with source ids, into the prompt.

``index`` is a folder built by ``ftatlas rag ingest`` or ``builtin:knowledge`` (built on first use under
the cache). Passages are numbered ``[1]..[k]`` and carry their source (``file#chunk``) so an answer can
cite them; ``max_context_tokens`` drops the lowest-ranked passages that do not fit (never the question).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ftatlas.context.base import Augmented, Context, ContextParams, query_of, register
from ftatlas.context.retrieval.retrieve import Hit, Mode, Retriever
from ftatlas.data.records import Conversation, Message

DEFAULT_PROMPT = ("Answer the question using the sources below. Cite a source by its number, e.g. [1].\n\n"
                  "{passages}\n\nQuestion: {input}")


class RagParams(ContextParams):
    index: str = Field(..., description="index folder from `ftatlas rag ingest`, or builtin:knowledge")
    k: int = Field(4, ge=1, le=50, description="passages per prompt")
    retrieval: Mode = Field("hybrid", description="hybrid (dense + BM25, reciprocal rank fusion), dense or bm25")
    max_context_tokens: int = Field(1024, ge=16, description="model tokens allowed for passages; "
                                                             "lowest-ranked passages are dropped to fit")
    prompt: str = Field(DEFAULT_PROMPT, description="final user turn; {passages} and {input} are filled in")
    passage: str = Field("[{n}] ({source}) {text}", description="one passage; {n}, {source}, {text}")

    @field_validator("index")
    @classmethod
    def _absolute(cls, v: str) -> str:
        """Saved into the run directory as an absolute path, so chat from elsewhere finds the same index."""
        return v if v.startswith("builtin:") else str(Path(v).expanduser().resolve())

    @field_validator("prompt")
    @classmethod
    def _slots(cls, v: str) -> str:
        missing = [s for s in ("{passages}", "{input}") if s not in v]
        if missing:
            raise ValueError(f"prompt must contain {' and '.join(missing)}")
        return v


def open_index(index: str, progress: bool = False) -> Retriever:
    """A Retriever on ``index``; ``builtin:NAME`` is ingested (incrementally) into the cache first."""
    if index.startswith("builtin:"):
        from ftatlas.context.retrieval.ingest import ingest
        from ftatlas.data.knowledge import INGEST
        from ftatlas.models.loading import cache_root

        size, overlap = INGEST["chunk_size"], INGEST["overlap"]
        folder = cache_root() / "indexes" / f"{index.removeprefix('builtin:')}-c{size}-o{overlap}"
        ingest([index], folder, chunk_size=size, overlap=overlap, progress=progress)
        return Retriever(folder)
    return Retriever(index)


@register("rag")
class Rag(Context):
    Params = RagParams
    summary = "top-k retrieved passages with source ids (hybrid dense + BM25 by default)"

    def __init__(self, params: RagParams, tokenizer, train_rows: list[Conversation] | None = None) -> None:
        super().__init__(params, tokenizer, train_rows)
        self.retriever = open_index(params.index)

    def augment(self, prompts: list[list[Message]]) -> list[Augmented]:
        p = self.params
        hits = self.retriever.search_many([query_of(x) for x in prompts], k=p.k, mode=p.retrieval)
        return [self._assemble(prompt, h) for prompt, h in zip(prompts, hits, strict=True)]

    def _assemble(self, prompt: list[Message], hits: list[Hit]) -> Augmented:
        p = self.params
        blocks, used = [], []
        budget = p.max_context_tokens
        for h in hits:  # best first; keep while they fit
            block = p.passage.format(n=len(blocks) + 1, source=h.chunk.cite, text=h.chunk.text)
            cost = len(self.tokenizer(block, add_special_tokens=False)["input_ids"])
            if cost > budget:
                break
            budget -= cost
            blocks.append(block)
            used.append(h.chunk.cite)
        question = self.templated(query_of(prompt))
        user = p.prompt.replace("{passages}", "\n\n".join(blocks)).replace("{input}", question)
        return Augmented(self.frame(prompt, user=user), {"passages": used, "dropped_for_budget": len(hits) - len(used)})
