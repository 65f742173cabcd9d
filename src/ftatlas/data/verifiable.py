"""Built-in ``ages``: a verifiable-reward task for GRPO/RLOO/PPO, generated deterministically.

Each prompt is one of the ``contacts`` sentences with the question "How old is the person?" and the
instruction to answer with only the number; the ``reference`` is the age. An answer is checkable
exactly (``exact_match``) and partially (``contains``). Base SmolLM2-135M-Instruct usually mentions the
age but inside a sentence ("The person in this sentence is 82."), so its starting reward is non-trivial
but far from perfect, and a few minutes of GRPO on CPU raise it (measured in bench/alignment.py).
"""

from __future__ import annotations

import json

from ftatlas.data.records import Conversation, Message

QUESTION = "How old is the person in this sentence? Answer with only the number."


def ages(split: str, n: int | None = None) -> list[Conversation]:
    """``train`` (400) and ``eval`` (100) rows over the same disjoint sentences as ``contacts``."""
    from ftatlas.data.builtin import contacts  # builtin.py lists this task, so import at call time

    out = []
    for row in contacts(split, n):
        sentence = row.messages[0].content.split("\n\n", 1)[1]
        age = json.loads(row.messages[1].content)["age"]
        msgs = [Message("user", f"{QUESTION}\n\n{sentence}"), Message("assistant", str(age))]
        out.append(Conversation(msgs, source=f"builtin:ages/{split}", line=row.line))
    return out
