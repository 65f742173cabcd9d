"""``ftatlas ui`` in a real browser: Debian's headless Chromium driven by Playwright, on the tiny model.

The tests run in file order on one server: two 2-step runs are queued from the form (they train one after
the other), then compared and chatted with. Screenshots of every page go to bench/results/ui/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi", reason="the [ui] extra is not installed (pip install 'ftatlas[ui]')")
uvicorn = pytest.importorskip("uvicorn", reason="the [ui] extra is not installed (pip install 'ftatlas[ui]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

CHROMIUM = os.environ.get("FTATLAS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("no system Chromium (apt-get install -y chromium; Playwright's own browser download is not used)",
                allow_module_level=True)

SHOTS = Path(__file__).resolve().parents[1] / "bench" / "results" / "ui"
TIMEOUT = 240_000  # ms: a 2-step tiny run is seconds, but each run is a fresh process importing torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def arena_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("arena")


@pytest.fixture(scope="module")
def arena_dir(tiny_model_dir, arena_root) -> Path:
    """A finished two-cell arena (base with no training vs LoRA) written by the real ``run_arena``."""
    from ftatlas.arena import load_arena, run_arena

    tmp = arena_root
    spec = {"name": "tiny", "model": {"name": str(tiny_model_dir)},
            "data": {"builtin": "contacts", "max_length": 128, "max_train": 16},
            "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "log_every": 1, "precision": "fp32"},
            "eval": {"max_examples": 4, "batch_size": 4, "decode": {"max_new_tokens": 8}},
            "output": {"dir": str(tmp)},
            "cells": [{"name": "base", "method": "none"}, {"name": "lora", "method": {"name": "lora", "r": 4}}]}
    (tmp / "arena.yaml").write_text(yaml.safe_dump(spec))
    _, rows = run_arena(load_arena(tmp / "arena.yaml"), log=lambda m: None)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    return tmp


@pytest.fixture(scope="module")
def server(arena_root, tmp_path_factory):
    from ftatlas.ui.app import create_app

    root = tmp_path_factory.mktemp("ui")
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(root / "runs", arena_root, cwd=root), host="127.0.0.1",
                                       port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    pg = browser.new_page(viewport={"width": 1360, "height": 900})
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.base = server  # type: ignore[attr-defined]
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def goto(pg, hash_: str) -> None:
    pg.goto(f"{pg.base}/#{hash_}")


def test_every_page_opens_without_cdn(page):
    external = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(page.base) else None)
    for hash_, heading in (("runs", "Runs"), ("launch", "Launch a run"), ("advise", "Advise"), ("arenas", "Arenas"),
                           ("chat", "Chat")):
        goto(page, hash_)
        sync_api.expect(page.locator("h1")).to_have_text(heading)
    assert external == []  # every asset comes from the package


def test_invalid_recipe_field_shows_the_cli_error_inline(page):
    goto(page, "launch")
    page.fill("input[name='train.lr']", "abc")
    page.select_option("select[name='train.scheduler']", "cosine")
    page.fill("input[name='method.r']", "-3")
    page.click("#validate")
    lr_error = page.locator("[data-error-for='train.lr']")
    sync_api.expect(lr_error).to_contain_text("valid number")
    sync_api.expect(page.locator("[data-error-for='method.r']")).to_contain_text("greater than or equal to 1")
    assert "invalid" in page.locator(".field[data-field='train.lr']").get_attribute("class")
    shot(page, "launch-invalid")


def _fill_tiny(page, model_dir: Path, name: str, lr: str) -> None:
    goto(page, "launch")
    for field, value in (("model.name", str(model_dir)), ("data.builtin", "contacts"), ("data.max_length", "128"),
                         ("data.max_train", "16"), ("train.max_steps", "2"), ("train.batch_size", "4"),
                         ("train.lr", lr), ("train.log_every", "1"), ("eval.max_examples", "4"),
                         ("eval.decode.max_new_tokens", "8"), ("output.name", name)):
        page.fill(f"input[name='{field}']", value)
    page.select_option("select[name='train.precision']", "fp32")
    page.fill("input[name='method.r']", "4")


def test_launch_two_runs_from_the_form_and_watch_the_curve(page, tiny_model_dir):
    _fill_tiny(page, tiny_model_dir, "ui-a", "0.001")
    page.click("#launch")
    page.wait_for_url("**#run/ui-a")
    _fill_tiny(page, tiny_model_dir, "ui-b", "0.01")
    page.click("#launch")
    page.wait_for_url("**#run/ui-b")
    goto(page, "runs")  # the queue: the second run waits while the first trains
    sync_api.expect(page.locator(".jobs")).to_contain_text("ui-b")
    shot(page, "runs-queue")
    goto(page, "run/ui-a")
    sync_api.expect(page.locator(".status")).to_have_text("done", timeout=TIMEOUT)
    loss = page.locator("svg.chart[aria-label='loss'] circle.point")
    assert loss.count() >= 2  # one point per logged step
    goto(page, "run/ui-b")
    sync_api.expect(page.locator(".status")).to_have_text("done", timeout=TIMEOUT)
    shot(page, "run")


def test_runs_table_sorts_and_compare_highlights_differences(page):
    goto(page, "runs")
    rows = page.locator("table.runs-table tbody tr")
    sync_api.expect(rows).to_have_count(2)
    page.click("table.runs-table th:has-text('run')")
    assert rows.first.locator("td").first.inner_text() == "ui-a"
    page.click("table.runs-table th:has-text('run')")
    assert rows.first.locator("td").first.inner_text() == "ui-b"
    shot(page, "runs")
    goto(page, "compare/ui-a/ui-b")
    sync_api.expect(page.locator("h1")).to_have_text("ui-a vs ui-b")
    assert page.locator("table.examples tbody tr").count() == 4  # eval.max_examples
    shot(page, "compare")


def _export_from_button(page, fmt: str, quant: str) -> None:
    page.select_option(f"select.quant[data-format='{fmt}']", quant)
    page.click(f"button.export-to[data-format='{fmt}']")
    report = page.locator(f".export-report[data-export='{fmt}-{quant}']")
    sync_api.expect(report.locator("table.parity-table tbody tr")).to_have_count(2, timeout=TIMEOUT)
    sync_api.expect(report.locator("table.parity-table")).to_contain_text(f"{fmt} {quant}")
    sync_api.expect(report.locator(".badge")).to_have_text("parity OK")
    sync_api.expect(report.locator("p.logits")).to_contain_text("argmax agrees")


def test_export_buttons_queue_exports_and_show_their_parity_tables(page):
    formats = {f["name"]: f for f in _get(page, "/api/export/formats")}
    goto(page, "run/ui-a")
    for name, f in formats.items():  # one button per format; those this machine cannot run say why
        button = page.locator(f"button.export-to[data-format='{name}']")
        if f["unavailable"]:
            sync_api.expect(button).to_be_disabled()
            sync_api.expect(page.locator(f".export-format[data-format='{name}'] small.why")).to_have_text(
                f["unavailable"])
        else:
            sync_api.expect(button).to_be_enabled()
    _export_from_button(page, "safetensors", "f32")
    if formats["gguf"]["unavailable"] is None:  # llama-cpp-python and its converters installed
        _export_from_button(page, "gguf", "f16")
    # export.json is written just before the command prints its table and exits
    _wait(lambda: all(j["state"] == "done" for j in _get(page, "/api/jobs") if j["args"][0] == "export"))
    assert {j["name"] for j in _get(page, "/api/jobs") if j["args"][0] == "export"} == {"ui-a"}
    page.locator(".export").scroll_into_view_if_needed()
    shot(page, "run-export")


def test_arena_page_shows_table_verdicts_and_plots(page, arena_dir):
    goto(page, "arenas")
    page.click("a:has-text('tiny')")
    sync_api.expect(page.locator("h1")).to_have_text("Arena tiny")
    table = page.locator("table.arena-table")
    sync_api.expect(table.locator("tbody tr")).to_have_count(2)
    sync_api.expect(table).to_contain_text("lowest peak memory")
    assert page.locator("svg.chart").count() == 3
    assert page.locator("svg.chart circle.point").count() >= 4  # 2 cells x 2 scatter plots, plus loss points
    page.click("summary:has-text('PNGs')")
    imgs = page.locator("img")
    assert imgs.count() == 3 and all(imgs.nth(i).evaluate("i => i.naturalWidth") > 0 for i in range(3))
    shot(page, "arena")


def test_an_arena_file_runs_from_its_button(page, arena_dir):
    goto(page, "arenas")
    page.click("button.run-arena[data-file='arena.yaml']")  # the finished arena again: its cells are reused
    sync_api.expect(page.locator(".arena-jobs .export-job")).to_contain_text("arena")
    _wait(lambda: next(j for j in _get(page, "/api/jobs") if j["name"] == "arena:tiny")["state"] not in (
        "queued", "running"))
    job = next(j for j in _get(page, "/api/jobs") if j["name"] == "arena:tiny")
    assert job["state"] == "done", job["log_tail"]
    assert "tiny/table.md, table.csv, report.html" in job["log_tail"]  # ftatlas arena's last line
    sync_api.expect(page.locator(".arena-jobs .export-job")).to_contain_text("done")


def test_chat_two_runs_side_by_side(page):
    goto(page, "chat")
    page.select_option("#chat-models", ["ui-a", "ui-b"])
    page.fill("#chat-input", "Extract the contact: Ann, ann@example.com")
    page.click("#chat-send")
    replies = page.locator(".chat-col .msg.assistant")
    sync_api.expect(replies).to_have_count(2, timeout=TIMEOUT)
    shot(page, "chat")
    texts = replies.all_inner_texts()
    assert not any(t.startswith("error:") for t in texts), texts
    assert page.locator(".chat-col[data-stream='done']").count() == 2  # both answers streamed to data: [DONE]


def test_advise_draws_the_map_and_hands_a_recipe_to_the_form(page, tiny_model_dir):
    goto(page, "advise")
    page.fill("#adv-model", str(tiny_model_dir))
    page.fill("#adv-len", "128")
    page.click("#adv-go")
    sync_api.expect(page.locator("svg.decision-map")).to_be_visible(timeout=TIMEOUT)
    assert page.locator("svg.decision-map .node.taken").count() >= 3
    assert page.locator("svg.decision-map .edge.taken").count() >= 2
    sync_api.expect(page.locator("table.advise-table")).to_contain_text("lora")
    shot(page, "advise")
    page.locator("button.run-recipe").first.click()
    sync_api.expect(page.locator("h1")).to_have_text("Launch a run")
    assert page.input_value("input[name='model.name']") == str(tiny_model_dir)


def _get(pg, path: str) -> dict:
    return json.loads(urllib.request.urlopen(f"{pg.base}{path}", timeout=30).read())


def _wait(cond, seconds: float = TIMEOUT / 1000) -> None:
    end = time.time() + seconds
    while not cond():
        assert time.time() < end, "timed out"
        time.sleep(0.3)


def test_stop_then_resume_from_the_run_page(page, tiny_model_dir):
    _fill_tiny(page, tiny_model_dir, "ui-long", "0.001")
    page.fill("input[name='train.max_steps']", "2000")
    page.fill("input[name='train.save_every']", "3")
    page.fill("input[name='train.batch_size']", "2")
    page.click("#launch")
    page.wait_for_url("**#run/ui-long")
    _wait(lambda: any(r["name"] == "ui-long" and r["has_checkpoint"] for r in _get(page, "/api/runs")))
    page.click(".progress button.stop")
    sync_api.expect(page.locator("button:has-text('resume')")).to_be_visible(timeout=TIMEOUT)
    stopped_at = max(c["step"] for c in _get(page, "/api/runs/ui-long")["curves"])
    shot(page, "run-stopped")
    page.click("button:has-text('resume')")
    _wait(lambda: max(c["step"] for c in _get(page, "/api/runs/ui-long")["curves"]) > stopped_at + 2)
    job = next(j for j in _get(page, "/api/jobs") if j["name"] == "ui-long")
    assert job["args"][-1] == "--resume" and job["state"] == "running"
    page.click(".progress button.stop")  # 2000 steps are not the point: stop it again
    _wait(lambda: next(j for j in _get(page, "/api/jobs") if j["name"] == "ui-long")["state"] == "stopped")
