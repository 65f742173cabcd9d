"""The seeds' decision map ("Интеллект-карта выбора метода", seeds section 3) as data, and its walk.

Nodes, edges and questions are the seeds' flowchart, node for node (A..O); each question is answered from
facts the advisor knows (budget vs the estimates, data size and shape, the user's goal), and the answer
carries its reason. ``mermaid`` prints the map with the taken path highlighted.

How each question is answered (the seeds' practical recommendations, section 7, in brackets):

* B "powerful GPU and enough data?": full fine-tuning's estimated peak fits the memory budget and the data
  has at least ``ENOUGH_ROWS`` rows; not for the knowledge goal ("V100 / A100 / RTX 4090 -> full FT").
* D "only part of the model?": the goal is a new task whose answers are short labels (median answer
  <= ``LABEL_TOKENS`` tokens, few distinct answers): the seeds' "top layers / classifier" case.
* F "new task with limited resources?": the goal is a task or a style and a PEFT method fits
  ("one 24 GB card -> QLoRA or adapters").
* H "only the biases?": the goal is a task or style and, of the training methods, only bias-sized ones fit
  (or the data is tiny): BitFit, minimal weights ("fast experiments -> LoRA or BitFit").
* J "assistant / dialogue?": the goal is chat, alignment or reasoning ("dialogue -> SFT + RLHF").
* L "update knowledge without training?": the goal is knowledge ("knowledge update -> RAG").
* otherwise N: in-context learning. G, K and M lead on to O, the hybrids (RAG + LoRA + RLHF).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENOUGH_ROWS = 1000  # below this, full fine-tuning of every weight is likely to overfit
LABEL_TOKENS = 4
LABEL_CLASSES = 50
GOALS = ("task", "style", "knowledge", "chat", "alignment", "reasoning")


@dataclass(frozen=True)
class Node:
    id: str
    label: str  # the seeds' own words (Russian), as in the flowchart
    english: str
    question: bool = False


NODES: dict[str, Node] = {n.id: n for n in (
    Node("A", "🚀 Начало: требуется адаптировать модель", "start: a model needs adapting"),
    Node("B", "Есть мощная GPU и достаточно данных?", "a powerful GPU and enough data?", True),
    Node("C", "Full Fine-Tuning\\n(обучаем все параметры)", "full fine-tuning (all parameters)"),
    Node("D", "Хотите дообучить только часть модели?", "train only part of the model?", True),
    Node("E", "Partial Fine-Tuning\\n(верхние слои / классификатор)", "partial fine-tuning (top layers / classifier)"),
    Node("F", "Нужно адаптировать под новую задачу\\nпри ограниченных ресурсах?",
         "a new task with limited resources?", True),
    Node("G", "PEFT-подходы\\n(LoRA, QLoRA, Adapters, Prefix)", "PEFT (LoRA, QLoRA, adapters, prefix)"),
    Node("H", "Хотите дообучить только смещения (bias)?", "train only the biases?", True),
    Node("I", "BitFit\\nминимальный объём весов", "BitFit, minimal weights"),
    Node("J", "Нужен ассистент / диалоговая модель?", "an assistant / dialogue model?", True),
    Node("K", "SFT / RLHF\\nобучение на инструкциях и обратной связи", "SFT / RLHF (instructions and feedback)"),
    Node("L", "Нужно актуализировать знания\\nбез обучения модели?", "update knowledge without training?", True),
    Node("M", "RAG\\nвекторный поиск + контекст", "RAG (vector search + context)"),
    Node("N", "In-Context Learning\\nадаптация без fine-tuning", "in-context learning (no fine-tuning)"),
    Node("O", "Гибридные решения:\\nRAG + LoRA + RLHF", "hybrids: RAG + LoRA + RLHF"),
)}

# (source, target, label) in the seeds' order; the label is the answer that takes the edge.
EDGES: list[tuple[str, str, str]] = [
    ("A", "B", ""), ("B", "C", "Да"), ("B", "D", "Нет"), ("D", "E", "Да"), ("D", "F", "Нет"),
    ("F", "G", "Да"), ("F", "H", "Нет"), ("H", "I", "Да"), ("H", "J", "Нет"), ("J", "K", "Да"),
    ("J", "L", "Нет"), ("L", "M", "Да"), ("L", "N", "Нет"), ("M", "O", ""), ("K", "O", ""), ("G", "O", ""),
]

# What each leaf means in ftatlas's axes: methods (first = preferred when it fits) and context.
# E (partial fine-tuning, classifier-like labels) recommends LoRA first: measured, freeze trails it there
# (issue #19's support-ticket labels: freeze 42.5% vs LoRA 98.8% exact match; contacts, 30 steps:
# 78% vs 88%, bench/results/methods.md) and costs no less to train on CPU; freeze stays the fallback.
LEAF_METHODS: dict[str, tuple[str, ...]] = {
    "C": ("full",), "E": ("lora", "freeze"), "G": ("lora", "qlora", "adapter", "prefix"), "I": ("bitfit",),
    "K": ("lora", "qlora", "full"), "M": ("none",), "N": ("none",),
}
PEFT = LEAF_METHODS["G"]
BIAS_SIZED = ("bitfit", "lntuning", "ia3")


@dataclass(frozen=True)
class Facts:
    """What the walk knows: the goal, the data, and which methods' estimates fit the budget."""

    goal: str
    rows: int
    fits: frozenset[str]  # method names whose estimated peak fits the memory budget
    answer_p50: int = 0
    distinct_answers: int = 0
    device: str = "cpu"
    budget_gb: float = 0.0


@dataclass
class Step:
    node: str
    answer: str | None = None  # "Да"/"Нет" for questions
    reason: str = ""


@dataclass
class Walk:
    steps: list[Step] = field(default_factory=list)

    @property
    def path(self) -> list[str]:
        return [s.node for s in self.steps]

    @property
    def leaf(self) -> str:
        """The decision node the walk ended on (O's predecessor when it reached the hybrids)."""
        nodes = [n for n in self.path if n != "O"]
        return nodes[-1]

    def lines(self) -> list[str]:
        out = []
        for s in self.steps:
            n = NODES[s.node]
            label = n.label.replace("\\n", " ")
            if n.question:
                out.append(f"{s.node} {label} ({n.english}) -> {s.answer}: {s.reason}")
            else:
                out.append(f"{s.node} {label} ({n.english})" + (f": {s.reason}" if s.reason else ""))
        return out


def _answer(node: str, f: Facts) -> tuple[bool, str]:
    """Yes/no and the reason for question ``node``."""
    trains = f.goal != "knowledge"
    if node == "B":
        ok = trains and "full" in f.fits and f.rows >= ENOUGH_ROWS
        why = (f"full FT {'fits' if 'full' in f.fits else 'does not fit'} in {f.budget_gb:g} GB on {f.device}; "
               f"{f.rows} rows ({'enough' if f.rows >= ENOUGH_ROWS else f'fewer than {ENOUGH_ROWS}'})")
        return ok, why + ("" if trains else "; the goal is knowledge, not new weights")
    if node == "D":
        labels = f.answer_p50 <= LABEL_TOKENS and 0 < f.distinct_answers <= LABEL_CLASSES
        ok = f.goal == "task" and labels and any(m in f.fits for m in LEAF_METHODS["E"])
        return ok, (f"goal {f.goal}; answers: median {f.answer_p50} tokens, {f.distinct_answers} distinct"
                    + (" (classifier-like labels)" if labels else ""))
    if node == "F":
        peft = [m for m in PEFT if m in f.fits]
        ok = f.goal in ("task", "style") and bool(peft)
        return ok, f"goal {f.goal}; PEFT that fits: {', '.join(peft) or 'none'}"
    if node == "H":
        small = [m for m in BIAS_SIZED if m in f.fits]
        ok = f.goal in ("task", "style") and bool(small)
        return ok, f"goal {f.goal}; bias-sized methods that fit: {', '.join(small) or 'none'}"
    if node == "J":
        return f.goal in ("chat", "alignment", "reasoning"), f"goal {f.goal}"
    if node == "L":
        return f.goal == "knowledge", f"goal {f.goal}"
    raise KeyError(node)


def walk(facts: Facts) -> Walk:
    """Follow the map from A with ``facts``; ends on a leaf (and O where the seeds continue to the hybrids)."""
    if facts.goal not in GOALS:
        raise ValueError(f"unknown goal {facts.goal!r}; one of: {', '.join(GOALS)}")
    w = Walk([Step("A")])
    node = "B"
    while True:
        if NODES[node].question:
            yes, reason = _answer(node, facts)
            w.steps.append(Step(node, "Да" if yes else "Нет", reason))
            node = next(t for s, t, lab in EDGES if s == node and lab == ("Да" if yes else "Нет"))
            continue
        w.steps.append(Step(node))
        onward = [t for s, t, _ in EDGES if s == node]
        if not onward:
            return w
        node = onward[0]


def mermaid(taken: Walk | None = None) -> str:
    """The flowchart in mermaid, with the taken nodes and edges highlighted (classDef + linkStyle)."""
    lines = ["flowchart TD"]
    declared: set[str] = set()

    def ref(n: str) -> str:
        if n in declared:
            return n
        declared.add(n)
        node = NODES[n]
        label = node.label.replace("\\n", "<br/>")  # the seeds' line breaks, as mermaid renders them
        return f'{n}{{"{label}"}}' if node.question else f'{n}["{label}"]'

    path = taken.path if taken else []
    hops = set(zip(path, path[1:], strict=False))
    hot = []
    for i, (s, t, lab) in enumerate(EDGES):
        arrow = f" -->|{lab}| " if lab else " --> "
        lines.append(f"{ref(s)}{arrow}{ref(t)}")
        if (s, t) in hops:
            hot.append(str(i))
    if taken:
        lines.append("classDef taken fill:#ffd54f,stroke:#e65100,stroke-width:3px")
        lines.append(f"class {','.join(path)} taken")
        if hot:
            lines.append(f"linkStyle {','.join(hot)} stroke:#e65100,stroke-width:4px")
    return "\n".join(lines)
