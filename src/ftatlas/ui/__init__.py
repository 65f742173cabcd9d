"""``ftatlas ui``: a local web app over the same run and arena folders the CLI writes (no second source of truth).

The server is FastAPI (``ftatlas.ui.app.create_app``); the front end is plain HTML/JS/CSS shipped in
``ftatlas/ui/static`` (no CDN, no build step). Pages: advise, launch and watch runs, compare runs and
arenas, chat (OpenAI ``/v1/chat/completions``), export.
"""
