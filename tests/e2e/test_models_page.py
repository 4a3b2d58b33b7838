"""The Models and System pages in a real browser: search and filters, a GGUF model started
from the page and another started elsewhere changing state live, the details drawer, batch
delete after confirming, and both pages at 360 px wide."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama import OllamaState
from tests.fakes.openai_compat import OpenAIState
from tests.support.app_server import RunningApp
from tests.support.catalog import LLAMA_SERVER, instance, wait_for
from tests.support.llama import llama_server
from tests.support.servers import free_port
from tests.support.tiny_gguf import write_tiny_gguf


def row(page: Page, name: str) -> Any:
    return page.locator(f'#model-list tr[data-name="{name}"]')


def test_models_page_search_start_live_state_and_batch_delete(
    page: Page,
    modelyard: Callable[..., RunningApp],
    ollama_server: FakeServer[OllamaState],
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("tiny-chat.gguf", "alpha.gguf", "beta.gguf"):
        shutil.copy(tiny_gguf, models / name)
    write_tiny_gguf(models / "embed" / "mini-embed.gguf", pooling=True)
    state = ollama_server.state
    state.add_model("llama3.2:3b", size=2_019_393_189)
    state.add_model("qwen2.5:0.5b", size=397_821_319, parameter_size="494M", family="qwen2")
    state.add_model("nomic-embed-text", size=274_302_450, family="nomic-bert")
    state.load("llama3.2:3b")
    app = modelyard(
        [instance("ollama", ollama_server.url)],
        models_dir=models,
        llama_server=LLAMA_SERVER,
    )
    app.http.post("/api/models/sync")
    page.goto(f"{app.url}/#/models")
    rows = page.locator("#model-list tbody tr")
    expect(rows).to_have_count(7)
    expect(page.locator("#models-summary")).to_have_text("7 models")

    # Search and filters.
    page.fill("#model-search", "ALPHA")
    expect(rows).to_have_count(1)
    expect(row(page, "alpha.gguf")).to_be_visible()
    page.fill("#model-search", "")
    page.select_option("#filter-provider", "ollama")
    expect(rows).to_have_count(3)
    page.select_option("#filter-status", "loaded")
    expect(rows).to_have_count(1)
    expect(row(page, "llama3.2:3b").get_by_test_id("status")).to_have_text("loaded")
    page.select_option("#filter-status", "")
    page.select_option("#filter-provider", "")
    page.select_option("#filter-size", "small")
    expect(rows).to_have_count(6)
    page.select_option("#filter-size", "")
    page.select_option("#sort-field", "size")
    page.click("#sort-order")  # descending
    expect(rows.first).to_have_attribute("data-name", "llama3.2:3b")

    # Start a GGUF model from its row; start another behind the page's back: both go live.
    row(page, "tiny-chat.gguf").locator("[data-action=start]").click()
    expect(row(page, "tiny-chat.gguf").get_by_test_id("status")).to_have_text(
        "loaded", timeout=30000
    )
    expect(row(page, "tiny-chat.gguf").locator("[data-action=stop]")).to_be_enabled()
    started = httpx.post(
        f"{app.url}/api/models/start",
        json={"provider": "llamacpp", "name": "alpha.gguf"},
        timeout=60,
    )
    assert started.json()["status"] == "loaded"
    expect(row(page, "alpha.gguf").get_by_test_id("status")).to_have_text("loaded")
    expect(row(page, "alpha.gguf").locator("[data-action=delete]")).to_be_disabled()

    # The details drawer: GGUF metadata and the memory estimate.
    row(page, "tiny-chat.gguf").locator(".model-name").click()
    drawer = page.locator("#model-drawer")
    expect(drawer).to_contain_text("GGUF metadata")
    expect(drawer).to_contain_text("Memory estimate")
    expect(drawer.get_by_test_id("fit")).to_contain_text("fits")
    expect(drawer).to_contain_text("Running")
    page.keyboard.press("Escape")
    expect(drawer).to_have_count(0)
    screenshot(page, "models")

    # Batch delete two models, after confirming (cancel first: nothing happens).
    row(page, "beta.gguf").get_by_test_id("select").check()
    row(page, "qwen2.5:0.5b").get_by_test_id("select").check()
    expect(page.locator("#batch-bar")).to_contain_text("2 selected")
    page.click("[data-batch=delete]")
    dialog = page.locator("dialog.dialog")
    expect(dialog).to_contain_text("Delete 2 models?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(rows).to_have_count(7)
    assert (models / "beta.gguf").exists()
    page.click("[data-batch=delete]")
    page.locator("dialog.dialog").get_by_role("button", name="Delete").click()
    expect(rows).to_have_count(5)
    expect(row(page, "beta.gguf")).to_have_count(0)
    expect(row(page, "qwen2.5:0.5b")).to_have_count(0)
    assert not (models / "beta.gguf").exists()
    assert "qwen2.5:0.5b" not in state.model_names()
    expect(page.locator("#batch-bar")).to_be_hidden()

    # The System page lists both running GGUF servers with their memory.
    page.goto(f"{app.url}/#/system")
    running = page.locator("#running-models tbody tr")
    expect(running).to_have_count(3)
    expect(
        page.locator('#running-models tr[data-name="alpha.gguf"]').get_by_test_id("model-memory")
    ).to_contain_text("MB")
    expect(page.get_by_test_id("gpu-none")).to_be_visible()
    screenshot(page, "system")

    # Stop from the page; then both pages fit a 360 px wide screen.
    page.goto(f"{app.url}/#/models")
    row(page, "alpha.gguf").locator("[data-action=stop]").click()
    expect(row(page, "alpha.gguf").get_by_test_id("status")).to_have_text("available")
    page.set_viewport_size({"width": 360, "height": 800})

    def fits(target: str, data: str) -> None:
        expect(page.locator(data).first).to_be_visible()  # measured with the data drawn
        page.wait_for_timeout(300)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{target} overflows: {width}px"

    fits("models", "#model-list tr[data-key]")  # the table, as the page shows it
    page.reload()  # as a phone opens it: the cards
    fits("models", "#model-list article[data-key]")
    screenshot(page, "models-mobile")
    page.goto(f"{app.url}/#/system")
    fits("system", "#running-models tr")
    screenshot(page, "system-mobile")
    httpx.post(
        f"{app.url}/api/models/stop", json={"provider": "llamacpp", "name": "tiny-chat.gguf"}
    )


def keyed_row(page: Page, provider: str, instance_id: str, name: str) -> Any:
    key = json.dumps([provider, instance_id, name], separators=(",", ":"))
    return page.locator(f"#model-list tr[data-key='{key}']")


def test_models_page_offers_only_actions_the_api_accepts(
    page: Page,
    modelyard: Callable[..., RunningApp],
    openai_server: FakeServer[OpenAIState],
    tmp_path: Path,
    tiny_gguf: Path,
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "mine.gguf")
    shutil.copy(tiny_gguf, models / "spare.gguf")
    openai_server.state.models = ["served-by-vllm"]
    with llama_server(tiny_gguf) as external:
        app = modelyard(
            [
                instance("openai_compat", openai_server.url, id="vllm"),
                instance("llamacpp", external, id="ext"),
                instance(
                    "llamacpp",
                    f"http://127.0.0.1:{free_port()}",
                    id="own",
                    managed=True,
                    model=str(tiny_gguf),
                    ctx_size=256,
                ),
            ],
            models_dir=models,
            llama_server=LLAMA_SERVER,
        )
        own = "/api/providers/llamacpp/instances/own"
        assert app.http.post(f"{own}/start", timeout=60).status_code == 200
        wait_for(
            lambda: app.http.get(f"{own}/status?refresh=true").json()["state"] == "RUNNING",
            what="the managed llama.cpp instance to run",
        )
        mine = app.http.post(
            "/api/models/start", json={"provider": "llamacpp", "name": "mine.gguf"}, timeout=60
        )
        assert mine.json()["status"] == "loaded", mine.text
        app.http.post("/api/models/sync")
        listed = app.http.get("/api/models/list").json()["models"]
        served = {
            m["instance_id"]: m["name"]
            for m in listed
            if m["provider"] == "llamacpp" and m["status"] == "loaded"
        }
        assert {"ext", "own", "local"} <= set(served), listed
        page.goto(f"{app.url}/#/models")

        # The external llama.cpp server's model: nothing modelyard can do, and the page says why.
        ext = keyed_row(page, "llamacpp", "ext", served["ext"])
        expect(ext.get_by_test_id("status")).to_have_text("loaded")
        for action in ("stop", "delete"):
            button = ext.locator(f"[data-action={action}]")
            expect(button).to_be_disabled()
            expect(button).to_have_attribute("title", re.compile("not managed|GGUF files"))
        expect(ext.locator("[data-action=stop]")).to_have_attribute(
            "title", re.compile("not managed by modelyard")
        )
        # The managed instance's model can be stopped; a GGUF file too, but not deleted yet.
        own_row = keyed_row(page, "llamacpp", "own", served["own"])
        expect(own_row.locator("[data-action=stop]")).to_be_enabled()
        expect(own_row.locator("[data-action=delete]")).to_be_disabled()
        expect(row(page, "mine.gguf").locator("[data-action=stop]")).to_be_enabled()
        expect(row(page, "mine.gguf").locator("[data-action=delete]")).to_have_attribute(
            "title", "Stop the model first"
        )
        expect(row(page, "spare.gguf").locator("[data-action=start]")).to_be_enabled()
        expect(row(page, "spare.gguf").locator("[data-action=delete]")).to_be_enabled()
        vllm = row(page, "served-by-vllm")
        expect(vllm.locator("[data-action=start]")).to_be_disabled()
        expect(vllm.locator("[data-action=start]")).to_have_attribute(
            "title", re.compile("load their models themselves")
        )

        # The drawer follows the same rules as the table.
        drawer = page.locator("#model-drawer")
        expectations = [
            (vllm, {"start": False, "delete": False}),
            (ext, {"stop": False, "delete": False}),
            (row(page, "mine.gguf"), {"stop": True, "delete": False}),
            (row(page, "spare.gguf"), {"start": True, "delete": True}),
        ]
        for model_row, enabled in expectations:
            model_row.locator(".model-name").click()
            expect(drawer).to_contain_text("Overview")
            expect(drawer.locator("button[data-action]")).to_have_count(len(enabled))
            for action, ok in enabled.items():
                button = drawer.locator(f"[data-action={action}]")
                if ok:
                    expect(button).to_be_enabled()
                else:
                    expect(button).to_be_disabled()
                    expect(button).not_to_have_attribute("title", "")
            page.keyboard.press("Escape")
            expect(drawer).to_have_count(0)

        # What is offered works: stopping the managed instance's model succeeds.
        own_row.locator("[data-action=stop]").click()
        expect(page.locator(".toast-success")).to_contain_text(served["own"], timeout=20000)
        expect(own_row.get_by_test_id("status")).to_have_text("available")
        expect(page.locator(".toast-error")).to_have_count(0)
