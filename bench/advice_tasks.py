"""Four user-like tasks for bench/advice_quality.py, each shaped unlike the built-in ones (contacts, knowledge,
ages): one-word labels, a strict key=value extraction, short factual answers, and a multi-turn chat whose last
answer depends on an earlier turn. Generated from fixed seeds (alpaca or messages rows, as a user's files)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

LABELS = {
    "billing": ["I was charged twice for {thing}", "my invoice for {thing} shows the wrong amount",
                "why did my card get billed for {thing}", "the price on my statement for {thing} is off"],
    "technical": ["the {thing} app crashes when I open it", "I get error {code} every time I use {thing}",
                  "{thing} will not connect to wifi", "the screen of my {thing} stays black"],
    "account": ["I cannot log in to my account", "please change the email on my account",
                "I forgot my password again", "how do I delete my profile and data"],
    "shipping": ["my {thing} has not arrived yet", "the tracking number for {thing} does not work",
                 "the parcel with my {thing} went to the wrong address", "when will my {thing} be delivered"],
    "refund": ["I want my money back for {thing}", "how do I return {thing} for a refund",
               "the {thing} broke, please refund me", "I cancelled {thing}, where is my refund"],
}
THINGS = ["the headphones", "my order", "the blender", "the subscription", "the laptop", "the kettle", "the bike",
          "the camera", "the phone case", "the smartwatch", "the lamp", "the backpack"]
OPENERS = ["Hi,", "Hello team,", "", "Urgent:", "Good morning.", "Hey there -", "Dear support,"]
CLOSERS = ["", " Thanks.", " Please help.", " This is the third time I write.", " Regards, Sam", " ASAP please!"]
CITIES = ["Lyon", "Oslo", "Porto", "Kyoto", "Dakar", "Quito", "Perth", "Minsk", "Tunis", "Cusco", "Gdansk", "Hanoi"]
NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Jorge", "Keiko", "Lena"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
OPPOSITES = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("early", "late"), ("light", "dark"),
             ("happy", "sad"), ("open", "closed"), ("full", "empty"), ("up", "down"), ("old", "new"),
             ("strong", "weak"), ("rich", "poor"), ("hard", "soft"), ("wet", "dry"), ("near", "far"),
             ("high", "low"), ("long", "short"), ("thick", "thin"), ("clean", "dirty"), ("loud", "quiet"),
             ("push", "pull"), ("cheap", "expensive"), ("safe", "dangerous"), ("true", "false"), ("win", "lose")]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
PLURALS = [("child", "children"), ("mouse", "mice"), ("foot", "feet"), ("tooth", "teeth"), ("man", "men"),
           ("woman", "women"), ("goose", "geese"), ("person", "people"), ("knife", "knives"), ("leaf", "leaves"),
           ("wolf", "wolves"), ("life", "lives"), ("half", "halves"), ("potato", "potatoes"), ("hero", "heroes"),
           ("city", "cities"), ("baby", "babies"), ("box", "boxes"), ("bus", "buses"), ("church", "churches"),
           ("dog", "dogs"), ("book", "books"), ("apple", "apples"), ("glass", "glasses"), ("story", "stories"),
           ("sheep", "sheep"), ("fish", "fish"), ("cactus", "cacti"), ("wife", "wives"), ("shelf", "shelves")]


def tickets(rng: random.Random) -> dict:
    label = rng.choice(list(LABELS))
    text = rng.choice(LABELS[label]).format(thing=rng.choice(THINGS), code=rng.randrange(100, 999))
    msg = f"{rng.choice(OPENERS)} {text}.{rng.choice(CLOSERS)}".strip()
    return {"instruction": "Classify this support ticket as billing, technical, account, shipping or refund. "
                           "Answer with the label only.", "input": msg, "output": label}


def extraction(rng: random.Random) -> dict:
    oid, qty, city = rng.randrange(1000, 99999), rng.randrange(1, 40), rng.choice(CITIES)
    day = f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    forms = [f"Order {oid} ({qty} units) left our {city} warehouse on {day}.",
             f"On {day} we shipped {qty} items to {city}, order number {oid}.",
             f"{city}: {qty} pcs dispatched {day} under order #{oid}.",
             f"Shipment for order no. {oid} - quantity {qty} - destination {city} - date {day}"]
    return {"instruction": "Extract id, qty, city and date as id=..;qty=..;city=..;date=.. with nothing else.",
            "input": rng.choice(forms), "output": f"id={oid};qty={qty};city={city};date={day}"}


def factual(rng: random.Random) -> dict:
    """One short-answer question of four kinds: a sum, a weekday or month before/after, an opposite, a plural."""
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randrange(2, 50), rng.randrange(2, 50)
        q, ans = rng.choice([(f"What is {a} plus {b}?", a + b), (f"Add {a} and {b}.", a + b)])
    elif kind == 1:
        names, unit = rng.choice([(WEEKDAYS, "day"), (MONTHS, "month")])
        i, step = rng.randrange(len(names)), rng.choice([1, -1])
        q = f"Which {unit} comes {'after' if step == 1 else 'before'} {names[i]}?"
        ans = names[(i + step) % len(names)]
    elif kind == 2:
        w, o = rng.choice(OPPOSITES)
        w, o = (w, o) if rng.random() < 0.5 else (o, w)
        q, ans = f"What is the opposite of '{w}'?", o
    else:
        word, plural = rng.choice(PLURALS)
        q, ans = f"What is the plural of '{word}'?", plural
    return {"instruction": q, "input": "", "output": str(ans)}


def factual_kind(row: dict) -> str:
    """The kind of a factual row (its held-out share follows its share of the rows)."""
    q = row["instruction"]
    return ("sum" if any(c.isdigit() for c in q) else  # the only kind with numbers
            "calendar" if q.startswith("Which") else "opposite" if "opposite" in q else "plural")


def chat(rng: random.Random) -> dict:
    name, city, pet = rng.choice(NAMES), rng.choice(CITIES), rng.choice(["cat", "dog", "parrot", "rabbit"])
    facts = {"city": (f"I live in {city}", city), "pet": (f"I have a {pet}", pet), "name": (f"I am {name}", name)}
    order = rng.sample(list(facts), 3)
    ask = rng.choice(order)
    question = {"city": "Which city do I live in?", "pet": "What pet do I have?", "name": "What is my name?"}[ask]
    return {"messages": [
        {"role": "user", "content": ". ".join(facts[k][0] for k in order) + "."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": question + " One word."},
        {"role": "assistant", "content": facts[ask][1]}]}


TASKS: dict[str, tuple[Callable[[random.Random], dict], int, int]] = {
    # name: (row generator, train rows, held-out rows); small, so 4 tasks x 10 cells stay well under an hour
    "tickets": (tickets, 128, 48),
    "extraction": (extraction, 96, 48),
    "factual": (factual, 128, 48),
    "chat": (chat, 96, 48),
}


# tasks whose rows come in kinds with small pools (7 weekdays, 25 opposites): the held-out split takes each kind's
# share of the rows, else the small pools run out in the training rows and the held-out split is all sums
STRATA: dict[str, Callable[[dict], str]] = {"factual": factual_kind}


def write_task(name: str, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """``folder/<name>/train.jsonl`` and ``eval.jsonl`` (held-out rows never repeat a training prompt; stratified
    by kind where the task has kinds)."""
    gen, n_train, n_eval = TASKS[name]
    rng = random.Random(f"{name}-{seed}")
    rows: list[dict] = []
    seen: set[str] = set()
    while len(rows) < n_train + n_eval:
        row = gen(rng)
        key = json.dumps(row.get("messages") or [row["instruction"], row["input"]])
        if key not in seen:
            seen.add(key)
            rows.append(row)
    if name in STRATA:
        rows = stratified(rows, STRATA[name], n_eval, rng)
    out = folder / name
    out.mkdir(parents=True, exist_ok=True)
    train, held = out / "train.jsonl", out / "eval.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:n_train]))
    held.write_text("".join(json.dumps(r) + "\n" for r in rows[n_train:]))
    return train, held


def stratified(rows: list[dict], kind: Callable[[dict], str], n_eval: int, rng: random.Random) -> list[dict]:
    """``rows`` reordered so that the last ``n_eval`` hold each kind in its share of all rows."""
    by_kind: dict[str, list[dict]] = {}
    for row in rows:
        by_kind.setdefault(kind(row), []).append(row)
    quota = {k: round(n_eval * len(v) / len(rows)) for k, v in by_kind.items()}
    largest = max(by_kind, key=lambda k: len(by_kind[k]))
    quota[largest] += n_eval - sum(quota.values())  # rounding: the largest kind absorbs the difference
    held = [r for k, v in by_kind.items() for r in v[len(v) - quota[k]:]]
    train = [r for k, v in by_kind.items() for r in v[:len(v) - quota[k]]]
    rng.shuffle(train)
    rng.shuffle(held)
    return train + held
