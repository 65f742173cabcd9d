"""``few_shot``: k solved examples from the training data, put into the prompt as prior user/assistant turns.

Selection is ``random`` (seeded, the same examples for every query) or ``nearest`` (the k training
questions most similar to the query by embedding cosine; the most similar sits closest to the query).
A token budget bounds the rendered prompt: examples are dropped, least relevant first, until it fits;
the query itself is never truncated. Rows identical to the query are never used as its example.
"""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
from pydantic import Field

from ftatlas.context.base import Augmented, Context, ContextParams, query_of, register
from ftatlas.context.retrieval.embedding import DEFAULT_EMBEDDER
from ftatlas.data.records import Conversation, Message


class FewShotParams(ContextParams):
    k: int = Field(3, ge=1, le=64, description="examples per prompt")
    selection: Literal["random", "nearest"] = Field("random", description="random (seeded) or nearest by embedding")
    seed: int = Field(0, description="seed for random selection")
    max_prompt_tokens: int = Field(1024, ge=16, description="budget for the whole rendered prompt; "
                                                             "examples are dropped to fit")
    examples: str | None = Field(None, description="file of examples; default: the recipe's training split")
    embedder: str = Field(DEFAULT_EMBEDDER, description="sentence-transformers model for selection=nearest")


@register("few_shot")
class FewShot(Context):
    Params = FewShotParams
    summary = "k training examples as prior turns (random or nearest), within a token budget"

    def __init__(self, params: FewShotParams, tokenizer, train_rows: list[Conversation] | None = None) -> None:
        super().__init__(params, tokenizer, train_rows)
        if params.examples is not None:
            from ftatlas.data.readers import read_file

            self.train_rows = read_file(params.examples)
        pool = []
        for r in self.train_rows:
            if r.is_text:
                continue
            prompt, answer = r.prompt_and_reference()
            pool.append(([m for m in prompt if m.role != "system"], answer))
        if not pool:
            raise ValueError("context few_shot needs solved chat examples: a recipe with a training split, "
                             "or context.examples=FILE")
        self.pool = pool
        self._pool_vectors: np.ndarray | None = None

    def augment(self, prompts: list[list[Message]]) -> list[Augmented]:
        queries = [query_of(p) for p in prompts]
        picks = self._nearest(queries) if self.params.selection == "nearest" else self._random(len(prompts))
        return [self._fit(prompt, q, chosen) for prompt, q, chosen in zip(prompts, queries, picks, strict=True)]

    def _random(self, n: int) -> list[list[int]]:
        order = list(range(len(self.pool)))
        random.Random(self.params.seed).shuffle(order)
        return [order[: self.params.k + 1] for _ in range(n)]  # one spare in case one equals the query

    def _nearest(self, queries: list[str]) -> list[list[int]]:
        from ftatlas.context.retrieval.embedding import load_embedder

        emb = load_embedder(self.params.embedder)
        if self._pool_vectors is None:
            self._pool_vectors = emb.encode([query_of(p) for p, _ in self.pool])
        sims = emb.encode(queries) @ self._pool_vectors.T
        # least similar first, so the most similar example ends up right before the query
        return [list(np.argsort(-row, kind="stable")[: self.params.k + 1][::-1]) for row in sims]

    def _fit(self, prompt: list[Message], query: str, chosen: list[int]) -> Augmented:
        usable = [i for i in chosen if query_of(self.pool[i][0]) != query]
        usable = usable[-self.params.k:] if self.params.selection == "nearest" else usable[: self.params.k]
        picked = len(usable)
        framed = self.frame(prompt)
        head = 1 if framed and framed[0].role == "system" else 0
        while True:
            turns: list[Message] = []
            for i in usable:
                ex_prompt, answer = self.pool[i]
                turns += [*self.frame(ex_prompt, system=False), Message("assistant", answer)]
            messages = framed[:head] + turns + framed[head:]
            if not usable or self.count_tokens(messages) <= self.params.max_prompt_tokens:
                return Augmented(messages, {"examples": [int(i) for i in usable],
                                            "dropped_for_budget": picked - len(usable)})
            usable = usable[1:]  # the front holds the least similar (nearest) / the first drawn (random)
