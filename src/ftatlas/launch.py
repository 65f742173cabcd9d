"""The ``ftatlas`` console entry point: re-execute once on a better heap allocator (``ftatlas.allocator``), then
run the CLI."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from ftatlas.allocator import ENV, preload_env, reexec_argv

    try:
        argv = reexec_argv()
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if argv is not None:
        env = preload_env()
        env["_FTATLAS_REEXEC"] = "1"  # once: a library that fails to preload must not loop
        env.setdefault(ENV, "auto")
        os.execve(sys.executable, argv, env)
    from ftatlas.cli import app

    app(prog_name="ftatlas")


if __name__ == "__main__":
    main()
