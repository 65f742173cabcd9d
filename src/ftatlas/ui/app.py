"""The UI server: one FastAPI app with a JSON API over run/arena folders, the job queue, the static front end,
and ``ftatlas serve``'s OpenAI-compatible API mounted at ``/v1`` (the chat page's only way to a model)."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ftatlas.ui import arenas_view, forms, runs_view
from ftatlas.ui.jobs import JobQueue

JsonBody = Annotated[dict[str, Any], Body()]
STATIC = resources.files("ftatlas.ui") / "static"
KEY_COOKIE = "ftatlas_ui_key"


def openai_app(runs_root: Path) -> FastAPI:
    """``ftatlas serve``'s OpenAI-compatible app over the runs folder, which the chat page calls: model id = run
    name, each finished run loaded on its first request (runs launched later included), its template, context
    and decoding applied, answers streamed."""
    from ftatlas.serve import create_app

    return create_app(runs_root=runs_root, device="auto")


def _user_errors() -> tuple[type[Exception], ...]:
    from ftatlas.cli.common import USER_ERRORS

    return (*USER_ERRORS, KeyError)


def create_app(runs_root: str | Path = "runs", arenas_root: str | Path = "arena", api_key: str | None = None,
               cwd: Path | None = None) -> FastAPI:
    """The whole UI. ``api_key``: every request must carry it (Bearer header, or the cookie ``/?key=`` sets)."""
    runs = Path(runs_root)
    arenas = Path(arenas_root)
    queue = JobQueue(runs, cwd)
    chat = openai_app(runs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.close()  # stop what is queued or training when the server stops
        chat.state.engine.close()  # a mounted app's own lifespan does not run

    app = FastAPI(title="ftatlas ui", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.queue = queue

    if api_key:
        @app.middleware("http")
        async def require_key(request: Request, call_next: Any) -> Response:
            given = request.query_params.get("key") or request.cookies.get(KEY_COOKIE) or \
                request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return JSONResponse({"error": "missing or wrong API key (open /?key=... once, or send a Bearer "
                                     "header)"}, 401)
            response = await call_next(request)
            if request.query_params.get("key"):
                response.set_cookie(KEY_COOKIE, api_key, httponly=True, samesite="strict")
            return response

    async def user_error(request: Request, e: Exception) -> JSONResponse:
        status = 404 if isinstance(e, FileNotFoundError | KeyError) else 400
        # KeyError's str() quotes its message; take the message itself (a message may end in a quote)
        message = e.args[0] if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str) else str(e)
        return JSONResponse({"error": message}, status)

    for kind in _user_errors():  # the CLI's user errors -> one clear message; anything else is a plain 500
        app.add_exception_handler(kind, user_error)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response((STATIC / "index.html").read_text(), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _runs_routes(app, runs)
    _launch_routes(app, runs, queue)
    _export_routes(app, runs, queue)
    _advise_routes(app, runs)
    _arena_routes(app, arenas, queue)
    app.mount("/", chat)  # last: what no UI route matched (/v1/...) goes to the OpenAI app
    return app


def _runs_routes(app: FastAPI, runs: Path) -> None:
    @app.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        return runs_view.list_runs(runs)

    @app.get("/api/runs/{name}")
    def run(name: str) -> dict[str, Any]:
        return runs_view.run_detail(runs_view.resolve_run(runs, name))

    @app.get("/api/compare")
    def compare(a: str, b: str) -> list[dict[str, Any]]:
        return runs_view.compare_predictions(runs_view.resolve_run(runs, a), runs_view.resolve_run(runs, b))


def _launch_routes(app: FastAPI, runs: Path, queue: JobQueue) -> None:
    @app.get("/api/schema")
    def schema() -> dict[str, Any]:
        return forms.form_schema() | {"runs_dir": str(runs)}

    @app.post("/api/validate")
    def validate(recipe: JsonBody) -> dict[str, Any]:
        _, errors = forms.validate(recipe)
        return {"ok": not errors, "errors": errors}

    @app.post("/api/launch")
    def launch(recipe: JsonBody) -> JSONResponse:
        from ftatlas.runs import default_run_name

        parsed, errors = forms.validate(recipe)
        if parsed is None:
            return JSONResponse({"ok": False, "errors": errors}, 422)
        data = forms.clean(recipe)
        out = data.setdefault("output", {})
        out.setdefault("dir", str(runs))
        out.setdefault("name", default_run_name(parsed.method.name, parsed.objective.name))
        target = Path(out["dir"]) / out["name"]
        if target.is_dir() and any(target.iterdir()) and not out.get("overwrite"):  # what train would refuse
            return JSONResponse({"ok": False, "errors": {"output.name": [
                f"run directory {target} exists; pick another name or set output.overwrite"]}}, 422)
        job = queue.submit(data)
        return JSONResponse({"ok": True, "job": job.view()})

    @app.get("/api/jobs")
    def jobs() -> list[dict[str, Any]]:
        return [j.view() for j in reversed(queue.jobs)]

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: int) -> dict[str, Any]:
        return queue.stop(job_id).view()

    @app.post("/api/runs/{name}/resume")
    def resume(name: str) -> dict[str, Any]:
        import yaml

        path = runs_view.resolve_run(runs, name)
        if not runs_view.complete_checkpoints(path):
            raise ValueError(f"run {name!r} has no checkpoint to resume from (set train.save_every to keep some)")
        runs_view.set_aside_incomplete(path)  # a stop during a checkpoint write leaves a partial one
        recipe = yaml.safe_load((path / "recipe.yaml").read_text())
        recipe["output"] = {**recipe.get("output", {}), "dir": str(path.parent), "name": name, "overwrite": True}
        return queue.submit(recipe, resume=True).view()

    @app.post("/api/runs/{name}/merge")
    def merge(name: str) -> dict[str, Any]:
        path = runs_view.resolve_run(runs, name)
        if not (path / "adapter").is_dir():
            raise ValueError(f"run {name!r} has no adapter/ to merge (full-weight runs are already a model/)")
        return queue.submit_merge(path).view()


def _export_routes(app: FastAPI, runs: Path, queue: JobQueue) -> None:
    @app.get("/api/export/formats")
    def formats() -> list[dict[str, Any]]:
        from ftatlas.export.formats import export_formats

        return export_formats()

    @app.post("/api/runs/{name}/export")
    def export(name: str, req: JsonBody) -> dict[str, Any]:
        """Queue ``ftatlas export RUN --to F --quant Q``; format, quant and the machine are checked first."""
        from ftatlas.export.formats import get_exporter
        from ftatlas.registry import UnknownNameError

        path = runs_view.resolve_run(runs, name)
        to, quant = str(req.get("to") or ""), str(req.get("quant") or "") or None
        if not to:
            raise ValueError('say which format: {"to": "safetensors" | "gguf" | "bnb-4bit" | "bnb-8bit", "quant": ...}')
        try:
            exporter = get_exporter(to)
        except UnknownNameError as e:
            raise ValueError(str(e)) from None  # a bad request, not a missing page
        reason = exporter.unavailable()
        if reason:
            raise ValueError(f"--to {to} cannot run on this machine: {reason}")
        quant = exporter.check(quant)
        row = runs_view.run_row(path)
        if row["weights"] is None and row["method"] != "none":
            raise ValueError(f"run {name!r} has no adapter/ or model/ yet (still training, or it failed)")
        return queue.submit_export(path, to, quant).view()


def _advise_routes(app: FastAPI, runs: Path) -> None:
    from ftatlas.ui.advise_view import advise_json

    @app.post("/api/advise")
    def advise(req: JsonBody) -> dict[str, Any]:
        data = str(req.get("data") or "contacts")
        upload = req.get("upload")  # {"filename": ..., "text": ...} from the page's file picker
        if upload:
            name = Path(str(upload.get("filename") or "upload.jsonl")).name
            target = runs / ".ui" / "uploads" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(str(upload.get("text") or ""))
            data = str(target.resolve())
        try:
            batch, length = int(req.get("batch_size") or 8), int(req.get("max_length") or 1024)
        except (TypeError, ValueError):
            raise ValueError("batch_size and max_length are whole numbers") from None
        return advise_json(str(req.get("model") or "smollm2-135m"), data, str(req.get("goal") or "task"),
                           req.get("memory") or None, batch, length, runs / ".ui" / "advice", runs)


def _arena_routes(app: FastAPI, arenas: Path, queue: JobQueue) -> None:
    @app.get("/api/arenas")
    def list_arenas() -> list[dict[str, Any]]:
        return arenas_view.list_arenas(arenas)

    @app.get("/api/arena-files")
    def arena_files() -> list[dict[str, Any]]:
        return arenas_view.arena_files(arenas)

    @app.post("/api/arena-files/{file}/run")
    def run_arena(file: str) -> dict[str, Any]:
        """Queue ``ftatlas arena FILE`` for an arena YAML in the arenas folder that writes its results there."""
        path, spec = arenas_view.launchable(arenas, file, queue.cwd)
        return queue.submit_arena(path, spec.name).view()

    @app.get("/api/arenas/{name}")
    def arena(name: str) -> dict[str, Any]:
        return arenas_view.arena_detail(arenas, name)

    @app.get("/api/arenas/{name}/plots/{plot}")
    def plot(name: str, plot: str) -> FileResponse:
        return FileResponse(arenas_view.plot_file(arenas, name, plot))
