"""Start the API under uvicorn: the loopback rule for API keys, the start-up summary, graceful shutdown."""

from __future__ import annotations

import os
from typing import Any

from ftatlas.network import is_loopback
from ftatlas.serve.guards import Limits


def api_key_from_env(var: str | None, host: str) -> str | None:
    """The key in ``$var``. Binding anything but loopback without one is refused: the API runs models."""
    if var is None:
        if not is_loopback(host):
            raise ValueError(f"binding {host} exposes the server beyond this machine; pass --api-key-env VAR "
                             "(an environment variable holding the key clients must send as a bearer token)")
        return None
    key = os.environ.get(var, "")
    if not key:
        raise ValueError(f"--api-key-env {var}: the environment variable {var} is not set or empty")
    if len(key) < 16:
        raise ValueError(f"--api-key-env {var}: the key is {len(key)} characters; use at least 16")
    return key


def run_server(app: Any, host: str, port: int, graceful_s: int = 30, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM; then stop accepting and let in-flight requests finish (up to
    ``graceful_s``) before the engine's worker stops."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=graceful_s, log_level=log_level,
                access_log=False)


__all__ = ["Limits", "api_key_from_env", "is_loopback", "run_server"]
