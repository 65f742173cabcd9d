"""lm-eval task documents as eval rows for ``ftatlas data decontaminate --against lm-eval:TASK``.

The task is built by lm-eval's own ``TaskManager`` (the ``harness`` extra), so its documents are exactly the
ones ``ftatlas eval --harness`` scores: the test split, else the validation split, after the task's own
``process_docs``. Each document becomes one row: the prompt lm-eval renders (``doc_to_text``) and the gold
answer (``doc_to_target``, or the gold choice of a multiple-choice task). Data is read offline only: a hub
dataset must already be in the local datasets cache (else a clear error says so); a task YAML over local
files (``dataset_path: json`` with ``data_files``) needs nothing else.

``lm-eval:TASK`` names a registered task or group, or a task YAML file; ``lm-eval:TASK@DIR`` also looks in
``DIR``, a folder of task YAMLs (as ``ftatlas eval --harness-include``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ftatlas.data.errors import DataError
from ftatlas.data.records import Conversation, Message

FIELD = "--against"


@contextmanager
def offline() -> Iterator[None]:
    """Hub access off for ``datasets`` and ``huggingface_hub`` while the task loads: cached data or nothing."""
    import datasets
    import huggingface_hub.constants as hub

    saved = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def _split_spec(spec: str) -> tuple[str, list[Path]]:
    name, _, folder = spec.partition("@")
    if not name:
        raise DataError(f"lm-eval:{spec}", None, FIELD, "give a task name: lm-eval:TASK or lm-eval:TASK@DIR")
    return name, [Path(folder)] if folder else []


def _answer(task: Any, doc: dict) -> str:
    """The gold answer as text: a target string, or the gold choice(s) of a multiple-choice task."""
    target = task.doc_to_target(doc)
    choices = task.doc_to_choice(doc) if getattr(task.config, "doc_to_choice", None) else None
    if choices and isinstance(target, int) and 0 <= target < len(choices):
        return str(choices[target])
    if choices and isinstance(target, list):
        return "\n".join(str(choices[t]) if isinstance(t, int) and 0 <= t < len(choices) else str(t)
                         for t in target)
    return "\n".join(map(str, target)) if isinstance(target, list) else str(target)


def _rows(task: Any) -> list[Conversation]:
    name = task.task_name if hasattr(task, "task_name") else str(task)
    rows = []
    for i, doc in enumerate(task.eval_docs, start=1):
        prompt = task.doc_to_text(doc)
        if isinstance(prompt, int):  # a cloze task's text is one of its choices
            prompt = task.doc_to_choice(doc)[prompt]
        rows.append(Conversation([Message("user", str(prompt)), Message("assistant", _answer(task, doc))],
                                 source=f"lm-eval:{name}", line=i))
    return rows


def _leaves(item: Any) -> list[Any]:
    return item.get_all_tasks() if hasattr(item, "get_all_tasks") else [item]


def lm_eval_rows(spec: str) -> list[Conversation]:
    """Every evaluated document of an lm-eval task (or each task of a group), read offline."""
    where = f"lm-eval:{spec}"
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise DataError(where, None, FIELD, "reading lm-eval tasks needs EleutherAI lm-evaluation-harness: "
                                            "pip install 'ftatlas[harness]'") from None
    from ftatlas.evaluate.harness import HarnessError, load_tasks

    name, include = _split_spec(spec)
    try:
        with offline():
            tasks = [t for item in load_tasks([name], include) for t in _leaves(item)]
            return [row for task in tasks for row in _rows(task)]
    except HarnessError as e:
        msg = str(e).replace("passed with --harness-include DIR", "given as lm-eval:TASK@DIR")
        if "could not build task" in msg:
            import datasets

            msg = (f"the task's data is not available offline ({msg}). ftatlas reads lm-eval task data only from "
                   f"the local datasets cache ({datasets.config.HF_DATASETS_CACHE}): load the task once where the "
                   "hub is reachable, or write a task YAML over local files (dataset_path: json, dataset_kwargs: "
                   "{data_files: ...}) and pass lm-eval:TASK@DIR")
        raise DataError(where, None, FIELD, msg) from None
