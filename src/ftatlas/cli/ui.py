"""``ftatlas ui``: the local web app over the run and arena folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ftatlas.cli.common import app, err, fail


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="address to bind; anything but loopback needs --api-key-env")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 7860,
    runs: Annotated[Path, typer.Option(help="runs folder: shown, and where launched runs go")] = Path("runs"),
    arenas: Annotated[Path, typer.Option(help="arena folder (ftatlas arena's output.dir)")] = Path("arena"),
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="name of an environment variable holding the key every request must carry")] = None,
) -> None:
    """Advise, launch and watch runs, compare runs and arenas, chat and export, in a browser (FastAPI)."""
    try:
        import uvicorn

        from ftatlas.network import is_loopback
        from ftatlas.ui.app import create_app
    except ImportError as e:
        fail(ValueError(f"ftatlas ui needs the [ui] extra: pip install 'ftatlas[ui]' ({e})"))
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            fail(ValueError(f"--api-key-env {api_key_env}: that environment variable is unset or empty"))
    elif not is_loopback(host):
        fail(ValueError(f"--host {host} is reachable from other machines: set --api-key-env VAR (a key in $VAR)"))
    err.print(f"ftatlas ui on http://{host}:{port}/  (runs: {runs}, arenas: {arenas}; Ctrl-C to stop)",
              highlight=False)
    uvicorn.run(create_app(runs, arenas, key), host=host, port=port, log_level="warning")
