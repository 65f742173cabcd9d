"""Screenshots of every ``ftatlas ui`` page on the real SmolLM2-135M, for the README (docs/img/ui-*.png).

Runs a small arena (the base model with no training vs a short LoRA SFT on the built-in contacts task), serves
the UI over it (its cells are the runs), and drives Debian's Chromium with Playwright through each page; on the
LoRA run's page it exports safetensors bf16 and GGUF q8_0 from their buttons (needs llama-cpp-python).
A few minutes on 2 CPU cores:  python scripts/ui_screenshots.py [--out docs/img] [--steps 30] [--work DIR]
(with --work, a second call reuses the finished arena: run_arena skips cells whose recipe is unchanged).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
import yaml
from playwright.sync_api import expect, sync_playwright

from ftatlas.arena import load_arena, run_arena
from ftatlas.ui.app import create_app


def build_arena(root: Path, steps: int) -> Path:
    spec = {"name": "demo", "model": {"name": "smollm2-135m"},
            "data": {"builtin": "contacts", "max_length": 256},
            "train": {"max_steps": steps, "batch_size": 8, "lr": 3e-4, "log_every": 2},
            "eval": {"max_examples": 20, "batch_size": 20, "decode": {"max_new_tokens": 40}},
            "output": {"dir": str(root)},
            "cells": [{"name": "base", "method": "none"}, {"name": "lora", "method": {"name": "lora", "r": 16}}]}
    (root / "demo.yaml").write_text(yaml.safe_dump(spec))
    _, rows = run_arena(load_arena(root / "demo.yaml"), log=print)
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"arena cells failed: {bad}")
    return root / "demo" / "cells"


def serve(runs: Path, arenas: Path) -> tuple[str, uvicorn.Server]:
    server = uvicorn.Server(uvicorn.Config(create_app(runs, arenas, cwd=runs.parent), host="127.0.0.1", port=7861,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    return "http://127.0.0.1:7861", server


def shoot(base: str, out: Path) -> None:
    expect.set_options(timeout=300_000)  # real-model answers on 2 cores
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(300_000)

        def go(hash_: str) -> None:
            page.goto(f"{base}/#{hash_}")

        go("runs")
        expect(page.locator("table.runs-table tbody tr")).to_have_count(2)
        page.screenshot(path=str(out / "ui-runs.png"))
        go("run/lora")
        expect(page.locator("svg.chart[aria-label='loss'] circle.point").first).to_be_visible()
        page.screenshot(path=str(out / "ui-run.png"), full_page=True)
        for fmt, quant in (("safetensors", "bf16"), ("gguf", "q8_0")):  # ftatlas export from the run page's buttons
            page.select_option(f"select.quant[data-format='{fmt}']", quant)
            page.click(f"button.export-to[data-format='{fmt}']")
        for fmt, quant in (("safetensors", "bf16"), ("gguf", "q8_0")):  # queued one after the other: minutes each
            expect(page.locator(f".export-report[data-export='{fmt}-{quant}'] table tbody tr")).to_have_count(
                2, timeout=900_000)
        expect(page.locator(".export-job")).to_have_count(0, timeout=300_000)  # both jobs exited (log boxes gone)
        page.locator(".export").screenshot(path=str(out / "ui-export.png"))
        go("compare/base/lora")
        expect(page.locator("table.examples tbody tr").first).to_be_visible()
        page.screenshot(path=str(out / "ui-compare.png"))
        go("arena/demo")
        expect(page.locator("svg.chart").first).to_be_visible()
        page.screenshot(path=str(out / "ui-arena.png"), full_page=True)
        go("chat")
        page.select_option("#chat-models", ["base", "lora"])
        page.fill("#chat-input", "Extract the contact record from this message as JSON.\n\n"
                  "Ann Lee (34) moved to Lisbon in spring.")
        page.click("#chat-send")
        expect(page.locator(".chat-col .msg.assistant")).to_have_count(2)
        page.screenshot(path=str(out / "ui-chat.png"))
        go("advise")
        page.fill("#adv-len", "256")
        page.click("#adv-go")
        expect(page.locator("svg.decision-map")).to_be_visible()
        page.screenshot(path=str(out / "ui-advise.png"), full_page=True)
        go("launch")
        page.fill("input[name='train.lr']", "3")
        page.fill("input[name='method.r']", "0")
        page.click("#validate")
        expect(page.locator("[data-error-for='train.lr']")).not_to_be_empty()
        page.locator("[data-block='method']").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "ui-launch-errors.png"))
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img"))
    ap.add_argument("--steps", type=int, default=30, help="LoRA steps of the demo run")
    ap.add_argument("--work", type=Path, default=None, help="folder for the arena (default: a temporary one)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = build_arena(work, args.steps)
        base, server = serve(runs, work)
        try:
            shoot(base, args.out)
        finally:
            server.should_exit = True
    print(f"wrote {', '.join(sorted(p.name for p in args.out.glob('ui-*.png')))} to {args.out}")


if __name__ == "__main__":
    main()
