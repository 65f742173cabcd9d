"""Built-in datasets, generated deterministically (no download): tasks the quickstart and tests use.

``contacts``: pull a person's name, age and city out of a sentence and answer with one JSON object
in a fixed key order. Base SmolLM2-135M-Instruct rarely answers in exactly that shape; a LoRA on a
few hundred examples learns it (measured numbers in the README). As preference pairs
(:func:`contact_pairs`) the correct JSON is chosen and a plausible wrong one (a field off or missing) rejected.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from ftatlas.data.knowledge import knowledge
from ftatlas.data.preference import PreferencePair
from ftatlas.data.records import Conversation, Message
from ftatlas.data.verifiable import ages

FIRST = [
    "Ana", "Bruno", "Chen", "Dara", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemal", "Lena",
    "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Ximena",
    "Yusuf", "Zofia", "Amara", "Bjorn", "Camila", "Dmitri", "Esme", "Felix", "Gwen", "Hassan", "Ingrid",
    "Jamal", "Kiri", "Luca", "Mei", "Nikolai", "Olga", "Pablo", "Rania", "Soren", "Talia", "Ugo", "Vera",
]
LAST = [
    "Silva", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Kowalski", "Haddad", "Novak", "Fischer", "Rossi",
    "Patel", "Garcia", "Ivanova", "Nakamura", "Mensah", "Dubois", "Larsen", "Yilmaz", "Costa", "Brennan",
    "Sato", "Weber", "Ortiz", "Kim", "Ahmed", "Jensen", "Romano", "Petrov", "Alvarez", "Schmidt",
]
CITIES = [
    "Lisbon", "Porto", "Lagos", "Nairobi", "Oslo", "Bergen", "Kyoto", "Osaka", "Krakow", "Gdansk", "Beirut",
    "Tunis", "Lyon", "Marseille", "Munich", "Hamburg", "Turin", "Naples", "Pune", "Chennai", "Bogota",
    "Quito", "Tallinn", "Riga", "Accra", "Cork", "Galway", "Busan", "Seville", "Valencia", "Leipzig",
    "Aarhus", "Izmir", "Curitiba", "Recife", "Hanoi", "Cebu", "Perth", "Hobart", "Dunedin", "Calgary",
]
TEMPLATES = [
    "Hi, I'm {name}, {age} years old, and I live in {city}.",
    "{name} ({age}) moved to {city} last year.",
    "Meet {name} from {city}; they turned {age} in May.",
    "Our new hire, {age}-year-old {name}, is based in {city}.",
    "{city} resident {name} celebrated a {age}th birthday on Sunday.",
    "Please ship the parcel to {name} in {city}. Note: recipient is {age}.",
    "At {age}, {name} opened a small bakery in {city}.",
    "Name: {name} / Age: {age} / Location: {city}",
    "The speaker, {name}, {age}, flew in from {city} this morning.",
    "{name} has lived in {city} since childhood and is now {age}.",
]
INSTRUCTION = "Extract the contact record from this message as JSON."


def _contact(rng: random.Random) -> tuple[str, str]:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    age = rng.randint(18, 89)
    city = rng.choice(CITIES)
    sentence = rng.choice(TEMPLATES).format(name=name, age=age, city=city)
    answer = json.dumps({"name": name, "age": age, "city": city})
    return sentence, answer


def contacts(split: str, n: int | None = None) -> list[Conversation]:
    """``train`` (400 rows) and ``eval`` (100 held-out rows, disjoint sentences) of the contacts task."""
    sizes = {"train": 400, "eval": 100}
    if split not in sizes:
        raise ValueError(f"built-in 'contacts' has splits train, eval; got {split!r}")
    rng = random.Random(20261123)
    seen: set[str] = set()
    rows: dict[str, list[Conversation]] = {"train": [], "eval": []}
    for part in ("train", "eval"):  # eval is drawn after train and never repeats a train sentence
        while len(rows[part]) < sizes[part]:
            sentence, answer = _contact(rng)
            if sentence in seen:
                continue
            seen.add(sentence)
            msgs = [Message("user", f"{INSTRUCTION}\n\n{sentence}"), Message("assistant", answer)]
            rows[part].append(Conversation(msgs, source=f"builtin:contacts/{part}", line=len(rows[part]) + 1))
    out = rows[split]
    return out[:n] if n is not None else out


def _wrong(record: dict, rng: random.Random) -> dict:
    """A plausible wrong extraction: one field off (age, city, surname) or one field missing."""
    wrong = dict(record)
    kind = rng.randrange(4)
    if kind == 0:
        wrong["age"] = record["age"] + rng.choice([-1, 1]) * rng.randint(1, 9)
    elif kind == 1:
        wrong["city"] = rng.choice([c for c in CITIES if c != record["city"]])
    elif kind == 2:
        first, last = record["name"].split(" ", 1)
        wrong["name"] = f"{first} {rng.choice([s for s in LAST if s != last])}"
    else:
        del wrong[rng.choice(["name", "age", "city"])]
    return wrong


def contact_pairs(split: str, n: int | None = None) -> list[PreferencePair]:
    """The ``contacts`` rows as preference pairs: the correct JSON chosen, a plausible wrong one rejected."""
    rng = random.Random(f"contacts-pairs-{split}")
    pairs = []
    for conv in contacts(split, n):
        prompt, answer = conv.prompt_and_reference()
        rejected = json.dumps(_wrong(json.loads(answer), rng))
        pairs.append(PreferencePair(prompt, answer, rejected, source=f"builtin:contacts-pairs/{split}", line=conv.line))
    return pairs


BUILTINS: dict[str, Callable[..., list[Conversation]]] = {"contacts": contacts, "knowledge": knowledge,
                                                        "ages": ages}
# Preference-pair form of a built-in task, for dpo/orpo/kto/simpo/reward objectives.
PREFERENCE_BUILTINS: dict[str, Callable[..., list[PreferencePair]]] = {"contacts": contact_pairs}
# Metric each built-in task is scored with by default.
BUILTIN_METRICS: dict[str, list[str]] = {"contacts": ["json_match", "exact_match"],
                                         "knowledge": ["contains", "shape_match", "normalized_match"],
                                         "ages": ["exact_match", "contains"]}
