"""The arena: many (method, objective, context) cells on one model, one dataset, one held-out eval."""

from ftatlas.arena.runner import ArenaError, load_arena, run_arena

__all__ = ["ArenaError", "load_arena", "run_arena"]
