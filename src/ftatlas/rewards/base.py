"""Reward functions: the signature, the recipe entry that names one, and the checks around every call.

The signature is TRL's reward-function convention::

    def my_reward(prompts: list[str], completions: list[str], **kwargs) -> list[float]: ...

- ``prompts[i]`` is the rendered prompt text (chat template applied) that produced ``completions[i]``;
  with ``num_generations`` G each prompt appears G times in a row.
- ``kwargs`` holds every other column of the prompt data, one value per completion (e.g. ``reference``),
  plus what the trainer adds (TRL: ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric``),
  so a function should accept ``**kwargs``.
- it returns one number per completion (``None`` = not applicable to this row, TRL's convention).

A recipe names a built-in (``exact_match``, ``regex``, ...) or a user function as ``module:function`` or
``path/to/file.py:function``. Every call is checked: a function that raises, returns the wrong number of
rewards, or returns something that is not a finite number stops the run with a :class:`RewardError` that
names the function.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ftatlas.registry import Registry, UnknownNameError

RewardFn = Callable[..., Sequence[float | None]]


class RewardError(ValueError):
    """A reward function that cannot be loaded, raised, or returned something other than one number each."""


class BuiltinReward:
    """A built-in reward: ``Params`` validated from the recipe entry, then called like a user function."""

    Params: type[BaseModel]
    summary: str = ""

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    def __call__(self, prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float | None]:
        raise NotImplementedError  # pragma: no cover - interface


REWARDS: Registry[type[BuiltinReward]] = Registry("reward function")


def completion_text(completion: Any) -> str:
    """TRL passes strings for plain prompts and ``[{"role": "assistant", "content": ...}]`` for chat prompts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def is_user_function(name: str) -> bool:
    return ":" in name


def _defined_names(source: str) -> set[str] | None:
    """Top-level names a module's source binds (None: a star import, so any name may exist)."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" for a in node.names):
                return None
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def check_user_function(ref: str) -> None:
    """What recipe validation checks of ``module:function`` without running any user code: the reference's shape,
    that the file or top-level module exists, and (reading its source, not importing it) that it defines the
    name. The import itself happens when a run needs the function (:func:`load_user_function`)."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise RewardError(f"reward function {ref!r}: expected 'module:function' or 'path/to/file.py:function'")
    if target.endswith(".py"):
        source: Path | None = Path(target)
        if not source.is_file():
            raise RewardError(f"reward function {ref!r}: file {target} does not exist")
    else:
        top = target.split(".")[0]  # find_spec of a dotted name would import (run) its parent packages
        spec = importlib.util.find_spec(top)
        if spec is None:
            raise RewardError(f"reward function {ref!r}: no module named {top!r}")
        origin = spec.origin if target == top else None
        source = Path(origin) if origin and origin.endswith(".py") else None
    if source is None:
        return
    try:
        names = _defined_names(source.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError) as e:
        raise RewardError(f"reward function {ref!r}: {source} is not valid Python: {e}") from None
    if names is not None and attr not in names:
        raise RewardError(f"reward function {ref!r}: {target} has no attribute {attr!r}")


def load_user_function(ref: str) -> Callable[..., Any]:
    """``package.module:function`` or ``path/to/file.py:function`` -> the callable."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise RewardError(f"reward function {ref!r}: expected 'module:function' or 'path/to/file.py:function'")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise RewardError(f"reward function {ref!r}: file {target} does not exist")
            spec = importlib.util.spec_from_file_location(f"ftatlas_user_rewards.{path.stem}", path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[spec.name] = module  # type: ignore[union-attr]
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(target)
    except RewardError:
        raise
    except Exception as e:  # noqa: BLE001 - any import-time failure of user code is reported the same way
        raise RewardError(f"reward function {ref!r}: cannot import {target}: {type(e).__name__}: {e}") from e
    fn = getattr(module, attr, None)
    if fn is None:
        raise RewardError(f"reward function {ref!r}: {target} has no attribute {attr!r}")
    if not callable(fn):
        raise RewardError(f"reward function {ref!r}: {attr!r} is not callable")
    return fn


def check_rewards(name: str, out: Any, n: int) -> list[float | None]:
    """One finite number (or None) per completion, else a RewardError naming the function."""
    if hasattr(out, "tolist"):  # numpy arrays and torch tensors
        out = out.tolist()
    if not isinstance(out, (list, tuple)):
        raise RewardError(f"reward function {name!r} returned {type(out).__name__}; expected a list of {n} numbers")
    if len(out) != n:
        raise RewardError(f"reward function {name!r} returned {len(out)} rewards for {n} completions")
    values: list[float | None] = []
    for i, v in enumerate(out):
        if v is None:
            values.append(None)
            continue
        if not isinstance(v, numbers.Real):
            raise RewardError(f"reward function {name!r} returned a non-number at index {i}: {v!r}")
        if not math.isfinite(float(v)):
            raise RewardError(f"reward function {name!r} returned {float(v)} at index {i}; rewards must be finite")
        values.append(float(v))
    return values


class CheckedReward:
    """Wraps a reward function: same call signature, every call checked, named for TRL's logs."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn = fn
        self.name = self.__name__ = name

    def __call__(self, prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float | None]:
        try:
            out = self.fn(prompts=prompts, completions=completions, **kwargs)
        except RewardError:
            raise
        except Exception as e:  # noqa: BLE001 - user code may raise anything; we name it and stop
            raise RewardError(f"reward function {self.name!r} raised {type(e).__name__}: {e}") from e
        return check_rewards(self.name, out, len(completions))


class RewardSpec(BaseModel):
    """One entry of an objective's ``rewards:`` list: ``{name, weight, <params of that built-in>}``."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="built-in reward (see `ftatlas rewards`), or 'module:function' / 'file.py:function'")
    weight: float = Field(1.0, description="weight of this reward in the sum")

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _resolvable(self) -> RewardSpec:
        """Built-in params and user references are checked when the recipe validates, before any model loads;
        user code is not run until a run needs it."""
        if is_user_function(self.name):
            if self.params():
                raise ValueError(f"reward {self.name!r}: user functions take no params ({', '.join(self.params())})")
            check_user_function(self.name)
        else:
            self._builtin_params()
        return self

    def _builtin_params(self) -> BaseModel:
        try:
            entry = REWARDS.get(self.name)
        except UnknownNameError as e:
            raise ValueError(f"{e} (or a user function 'module:function')") from None
        try:
            return entry.Params(**self.params())
        except ValidationError as e:
            errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise ValueError(f"reward {self.name!r}: {errs}") from None

    def build(self) -> CheckedReward:
        if is_user_function(self.name):
            fn: Callable[..., Any] = load_user_function(self.name)
        else:
            fn = REWARDS.get(self.name)(self._builtin_params())
        return CheckedReward(fn, self.name)


def build_rewards(specs: list[RewardSpec]) -> tuple[list[CheckedReward], list[float]]:
    """The checked callables and their weights, in recipe order."""
    return [s.build() for s in specs], [s.weight for s in specs]


def combined(fns: list[CheckedReward], weights: list[float]) -> Callable[..., list[float]]:
    """Weighted sum of several reward functions (None counts as 0), for trainers that take one reward."""

    def total(prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float]:
        out = [0.0] * len(completions)
        for fn, w in zip(fns, weights, strict=True):
            for i, r in enumerate(fn(prompts, completions, **kwargs)):
                out[i] += w * (r or 0.0)
        return out

    return total
