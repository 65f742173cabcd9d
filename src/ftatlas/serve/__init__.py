"""OpenAI-compatible serving of runs, adapters and models: ``create_app`` (the API) and ``run_server``."""

from ftatlas.serve.app import create_app
from ftatlas.serve.guards import Limits
from ftatlas.serve.pool import Pool, Served, load_pool

__all__ = ["Limits", "Pool", "Served", "create_app", "load_pool"]
