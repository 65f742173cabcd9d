"""What a server serves: run dirs and models loaded once, adapter runs sharing their base.

Each target becomes one model id (a run's directory name; a model's name as given). Adapter runs whose
recipes load the same base the same way (name, dtype, method load options) share one copy of it: the first
becomes a peft ``PeftModel`` and the others are added with ``load_adapter``; a request picks its adapter with
``set_adapter`` and the base's own id runs with adapters disabled. A run keeps its own tokenizer (the chat
template it trained with), decoding defaults (its ``eval.decode``) and context (its RAG index or shots).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase

from ftatlas.context.base import Context, context_for
from ftatlas.data.records import Message
from ftatlas.data.templating import render_prompt
from ftatlas.models import require_chat_template, resolve_precision
from ftatlas.recipe import DecodeSpec, Recipe

Kind = Literal["chat", "reward"]


@dataclass
class Served:
    """One model id: the weights it runs on, how to select them, and what the run adds to a prompt."""

    id: str
    kind: Kind
    model: Any  # None for reward runs (their scorer holds the model)
    tokenizer: PreTrainedTokenizerBase
    adapter: str | None = None  # peft adapter name on a shared base; None = no adapter
    context: Context | None = None
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    source: str = ""
    max_tokens: int | None = None  # a run's eval.decode.max_new_tokens: the answer length a request gets unasked
    scorer: Callable[[list[Any], list[str]], list[float]] | None = None  # reward runs
    backend: str = "transformers"  # or "llama.cpp" (model is then a llama_cpp.Llama)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def window(self) -> int | None:
        """Tokens of context the model takes (prompt + answer), where known."""
        if self.backend == "llama.cpp":
            return int(self.model.n_ctx())
        window = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
        return window if isinstance(window, int) else None

    @property
    def autocast(self) -> Any:
        return resolve_precision("auto", next(self.model.parameters()).device.type).autocast

    @contextlib.contextmanager
    def active(self) -> Iterator[Any]:
        """The model with this id's adapter selected (the base alone for the base's id).
        Not thread-safe: the engine's single worker thread is the only caller."""
        peft = self.backend == "transformers" and hasattr(self.model, "peft_config")
        if not peft:
            yield self.model
        elif self.adapter is None:
            with self.model.disable_adapter():
                yield self.model
        else:
            self.model.set_adapter(self.adapter)
            yield self.model

    def render(self, messages: list[Message]) -> tuple[str, dict[str, Any]]:
        """The prompt text this model answers (its training template, its context applied) and what the
        context added (e.g. ``{"passages": [...]}``) - the same steps as ``ftatlas chat``."""
        info: dict[str, Any] = {}
        if self.context is not None:
            aug = self.context.augment([messages])[0]
            messages, info = aug.messages, aug.info
        return render_prompt(self.tokenizer, messages), info


@dataclass
class _Base:
    model: Any  # None for reward runs (their scorer holds the model)
    tokenizer: PreTrainedTokenizerBase
    source: str
    peft_type: str | None = None


@dataclass
class Pool:
    """The served ids, in the order given, plus notes on what shares what (printed at start-up). It keeps the
    loaded bases, so a run added later (``load_run``) joins a base already in memory."""

    models: dict[str, Served] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"
    bases: dict[str, list[_Base]] = field(default_factory=dict)

    def get(self, model_id: str) -> Served:
        from ftatlas.serve.schemas import ApiError

        if model_id not in self.models:
            raise ApiError(404, f"The model '{model_id}' does not exist; served: {', '.join(self.models)}",
                           "model", "model_not_found")
        return self.models[model_id]

    def add(self, served: Served) -> None:
        if served.id in self.models:
            raise ValueError(f"two served models are named {served.id!r}; serve runs with distinct directory names")
        self.models[served.id] = served

    def load_run(self, path: Path) -> Served:
        """Load one more run dir into this pool (an adapter run joins its loaded base with ``load_adapter``).
        Not thread-safe with generation: the server calls it on its engine's worker thread, between batches."""
        _Loader(self.device, self).add_run(path)
        return self.models[path.resolve().name]


def _base_key(recipe: Recipe, device: str) -> str:
    from ftatlas.methods import METHODS

    options = METHODS.get(recipe.method.name)().load_options(recipe.method_params(), device)
    return f"{recipe.model.name}|{recipe.model.dtype}|{sorted((k, repr(v)) for k, v in options.items())}"


class _Loader:
    def __init__(self, device: str, pool: Pool | None = None) -> None:
        from ftatlas.models.device import resolve_device

        self.device = resolve_device(device)
        self.pool = pool if pool is not None else Pool(device=self.device)
        self.bases = self.pool.bases

    def base_for(self, recipe: Recipe, peft_type: str | None) -> tuple[_Base, bool]:
        """A loaded base for this recipe that can take another adapter of ``peft_type`` (new if none can)."""
        from ftatlas.models.trained import load_recipe_base

        key = _base_key(recipe, self.device)
        for base in self.bases.get(key, []):
            if peft_type is None or base.peft_type in (None, peft_type):
                return base, True
        loaded = load_recipe_base(recipe, self.device)
        base = _Base(loaded.model.eval(), loaded.tokenizer, loaded.source)
        if self.bases.get(key):
            self.pool.notes.append(f"{recipe.model.name}: a second copy of the base for a {peft_type} adapter "
                                   f"(adapters of different types cannot share one peft model)")
        self.bases.setdefault(key, []).append(base)
        if recipe.model.name not in self.pool.models:  # the base's own id: no adapter
            self.pool.add(Served(recipe.model.name, "chat", base.model, base.tokenizer, None, None,
                                 DecodeSpec(), base.source))
        return base, False

    def add_run(self, path: Path) -> None:
        from ftatlas.methods import METHODS
        from ftatlas.models.loading import load_tokenizer
        from ftatlas.objectives import OBJECTIVES
        from ftatlas.recipe import load_recipe
        from ftatlas.runs import RunDir

        run = RunDir.open(path)
        recipe = load_recipe(run.recipe_file)
        run_id = path.resolve().name
        if OBJECTIVES.get(recipe.objective.name).head == "reward":
            self._add_reward(run_id, path, recipe)
            return
        decode = recipe.eval.decode
        if not METHODS.get(recipe.method.name).trains:  # method none: the base plus the run's context
            base, _ = self.base_for(recipe, None)
            self._add(Served(run_id, "chat", base.model, base.tokenizer, None, None, decode, str(path)), recipe)
            return
        weights = run.weights_dir()
        tokenizer = load_tokenizer(str(weights))  # carries the template the run trained with
        if weights != run.adapter_dir:  # full / freeze / bitfit: the run's own weights
            from ftatlas.models.trained import load_run_or_model

            loaded, _, _ = load_run_or_model(str(path), self.device)
            self._add(Served(run_id, "chat", loaded.model, tokenizer, None, None, decode, str(path)), recipe)
            return
        self._add_adapter(run_id, weights, recipe, tokenizer, decode, path)

    def _add_adapter(self, run_id: str, weights: Path, recipe: Recipe, tokenizer: PreTrainedTokenizerBase,
                     decode: DecodeSpec, path: Path) -> None:
        from peft import PeftConfig, PeftModel

        from ftatlas.methods.base import keep_prompt_in_generation

        peft_type = str(PeftConfig.from_pretrained(str(weights)).peft_type)
        base, shared = self.base_for(recipe, peft_type)
        if base.peft_type is None:
            plain = base.model
            model = PeftModel.from_pretrained(plain, str(weights), adapter_name=run_id).to(self.device)
            base.model, base.peft_type = keep_prompt_in_generation(model).eval(), peft_type
            for served in self.pool.models.values():  # the base id and context-only runs loaded before: the
                if served.model is plain:  # wrapped model, so they run with the adapters off (peft injected the
                    served.model = base.model  # adapter into ``plain``'s own layers)
        else:
            base.model.load_adapter(str(weights), adapter_name=run_id)
            base.model.to(self.device).eval()
        if shared:
            self.pool.notes.append(f"{run_id}: {peft_type} adapter on the shared base {recipe.model.name}")
        self._add(Served(run_id, "chat", base.model, tokenizer, run_id, None, decode, str(path)), recipe)

    def _add_reward(self, run_id: str, path: Path, recipe: Recipe) -> None:
        from ftatlas.models.loading import load_tokenizer
        from ftatlas.objectives.reward import load_reward_scorer

        scorer = load_reward_scorer(path, device=self.device)
        tokenizer = load_tokenizer(str(path / "adapter" if (path / "adapter").is_dir() else path / "model"))
        self.pool.add(Served(run_id, "reward", None, tokenizer, source=str(path), scorer=scorer))
        self.pool.notes.append(f"{run_id}: reward model (its own copy: the score head differs from the LM head)")

    def _add(self, served: Served, recipe: Recipe | None) -> None:
        require_chat_template(served.tokenizer, "serve")
        served.context = context_for(recipe, served.tokenizer)
        if recipe is not None:
            served.max_tokens = recipe.eval.decode.max_new_tokens
        self.pool.add(served)

    def add_model(self, target: str, backend: str) -> None:
        from ftatlas.models.loading import ALIASES, load_model, load_tokenizer, resolve_source
        from ftatlas.serve.llama_cpp import llama_cpp_available, load_llama

        if target in self.pool.models:
            return  # already loaded as a run's base
        gguf = Path(ALIASES[target]()) if target in ALIASES and backend == "llama.cpp" else Path(target)
        if backend == "llama.cpp" and gguf.suffix != ".gguf":
            raise ValueError(f"{target}: the llama.cpp backend serves .gguf files (ftatlas export ... gguf)")
        if gguf.suffix == ".gguf" and (backend == "llama.cpp" or (backend == "auto" and llama_cpp_available())):
            llm = load_llama(gguf)
            tokenizer = load_tokenizer(resolve_source(str(gguf)))  # the GGUF's template, rendered as elsewhere
            require_chat_template(tokenizer, "serve")
            self.pool.add(Served(target, "chat", llm, tokenizer, source=str(gguf), backend="llama.cpp"))
            return
        loaded = load_model(target, device=self.device)
        self.pool.add(Served(target, "chat", loaded.model.eval(), loaded.tokenizer, source=loaded.source))


def load_pool(targets: list[str], device: str = "auto", backend: str = "auto") -> Pool:
    """Load every target (run dir or model source) once; adapter runs on one base share it. ``backend``:
    ``auto`` (llama.cpp for a .gguf file when llama-cpp-python is installed, else transformers),
    ``transformers`` or ``llama.cpp`` (for .gguf targets; runs always use transformers)."""
    loader = _Loader(device)
    runs = [t for t in targets if (Path(t) / "recipe.yaml").is_file()]
    for t in runs:
        loader.add_run(Path(t))
    for t in targets:
        if t not in runs:
            loader.add_model(t, backend)
    return loader.pool
