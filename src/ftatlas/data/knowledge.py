"""Built-in ``knowledge`` task: a made-up instrument maker's catalogue the base model cannot know.

Deterministic: 64 products, each with six facts (launch year, weight, battery life, assembly town,
designer, price) written as handbook documents (one Markdown file per product line), plus one
question per fact. The facts are split *by fact*: the held-out questions ask about facts that appear
in the documents but in no training answer, so a model can only answer them by reading (RAG), while
the training answers teach the house answer style (just the value, e.g. ``380 grams``).

That makes it the test bed of the Atlas' claim: RAG wins on facts the model never saw; fine-tuning
wins on format; RAG + LoRA gets both.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ftatlas.data.records import Conversation, Message

COMPANY = "Veloran Instruments"
LINES = {
    "tide-loggers": "tide logger",
    "soil-probes": "soil probe",
    "field-spectrometers": "field spectrometer",
    "weather-buoys": "weather buoy",
    "survey-drones": "survey drone",
    "core-samplers": "core sampler",
    "air-samplers": "air sampler",
    "seismic-nodes": "seismic node",
}
_SYLLABLES = ["vor", "quel", "tam", "bri", "osk", "lun", "ferr", "ys", "drav", "mel", "pax", "th", "orn",
              "cael", "zin", "hav", "rud", "sel", "kor", "wen", "ix", "bal", "tre", "mor"]
TOWNS = ["Orvenna", "Caldris", "Mirethorn", "Tessaly", "Brunhollow", "Velkarra", "Ostmere", "Quillan",
         "Saradune", "Ketterby", "Lowmarch", "Ysbrook"]
DESIGNERS = ["Ilse Marten", "Tobiah Crane", "Wren Okonkwo", "Halvard Nyst", "Priya Delacourt", "Oren Falk",
             "Maelis Vantorre", "Juno Askari", "Bastian Rook", "Selin Haverty", "Corin Ashdale", "Neve Tallis"]
FACTS = ("year", "weight", "battery", "town", "designer", "price")
QUESTIONS = {
    "year": "In what year was the {p} launched?",
    "weight": "How much does the {p} weigh?",
    "battery": "How long does the {p}'s battery last?",
    "town": "In which town is the {p} assembled?",
    "designer": "Who designed the {p}?",
    "price": "How much does the {p} cost?",
}
# One product paragraph (<= 72 MiniLM tokens) per chunk: a 135M model reads one product far better than three.
INGEST = {"chunk_size": 96, "overlap": 0}
N_PRODUCTS = 64
N_EVAL = 100
SEED = 1123


@dataclass(frozen=True)
class Product:
    name: str
    line: str  # key of LINES
    facts: dict[str, str]


def products() -> list[Product]:
    rng = random.Random(SEED)
    names: set[str] = set()
    out = []
    lines = list(LINES)
    while len(out) < N_PRODUCTS:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(2)).capitalize()
        name = f"{word} {word[0]}-{rng.randrange(10, 99)}"
        if word in {n.split()[0] for n in names} or len(word) < 5:
            continue
        names.add(name)
        facts = {
            "year": str(rng.randint(2009, 2024)),
            "weight": f"{rng.randrange(120, 2400, 10)} grams",
            "battery": f"{rng.randint(4, 96)} hours",
            "town": rng.choice(TOWNS),
            "designer": rng.choice(DESIGNERS),
            "price": f"{rng.randrange(300, 9000, 10)} crowns",
        }
        out.append(Product(name, lines[len(out) % len(lines)], facts))
    return out


def _paragraph(p: Product, rng: random.Random) -> str:
    f = p.facts
    kind = LINES[p.line]
    sentences = [
        f"The {p.name} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} that {COMPANY} launched in {f['year']}.",
        rng.choice([f"It weighs {f['weight']}", f"The unit weighs {f['weight']}"])
        + f" and its battery lasts {f['battery']} on a full charge.",
        f"Every {p.name} is assembled in {f['town']}.",
        rng.choice([f"It was designed by {f['designer']}.", f"Its designer is {f['designer']}."]),
        f"The list price is {f['price']}.",
    ]
    return " ".join(sentences)


def documents() -> dict[str, str]:
    """File name -> Markdown text of the catalogue (one file per product line, one paragraph per product)."""
    rng = random.Random(SEED + 1)
    docs = {}
    for line, kind in LINES.items():
        paras = [_paragraph(p, rng) for p in products() if p.line == line]
        docs[f"{line}.md"] = f"# {COMPANY}: {kind}s\n\n" + "\n\n".join(paras) + "\n"
    docs["about.md"] = (f"# About {COMPANY}\n\n{COMPANY} builds field instruments for environmental survey "
                        f"work in {len(LINES)} product lines. Product pages list launch year, weight, battery life, "
                        "assembly town, designer and list price.\n")
    return docs


def _rows(split: str) -> list[tuple[Product, str]]:
    pairs = [(p, fact) for p in products() for fact in FACTS]
    random.Random(SEED + 2).shuffle(pairs)
    return pairs[:N_EVAL] if split == "eval" else pairs[N_EVAL:]


def knowledge(split: str, n: int | None = None) -> list[Conversation]:
    """``train`` (284 questions) and ``eval`` (100 questions about facts absent from every training answer)."""
    if split not in ("train", "eval"):
        raise ValueError(f"built-in 'knowledge' has splits train, eval; got {split!r}")
    rows = []
    for i, (p, fact) in enumerate(_rows(split), 1):
        msgs = [Message("user", QUESTIONS[fact].format(p=p.name)), Message("assistant", p.facts[fact])]
        rows.append(Conversation(msgs, source=f"builtin:knowledge/{split}", line=i,
                                 meta={"evidence": [p.name, p.facts[fact]]}))
    return rows[:n] if n is not None else rows


def builtin_documents(name: str) -> Path:
    """Write a built-in task's documents (once) under the cache and return the folder, for ``rag ingest``."""
    from ftatlas.models.loading import cache_root

    if name != "knowledge":
        raise ValueError(f"built-in documents exist for: knowledge (got {name!r})")
    folder = cache_root() / "builtin" / "knowledge" / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    for fname, text in documents().items():
        f = folder / fname
        if not f.is_file() or f.read_text() != text:
            f.write_text(text)
    return folder
