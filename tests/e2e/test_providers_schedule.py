"""The Providers page shows what the scheduler says of each instance's models, live, in
Chromium: a local file loaded by a gateway request shows on its server's card as loaded with
the time left before its idle unload; stopped, it goes with its server."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import openai
from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot
from tests.support.app_server import RunningApp
from tests.support.llama import LLAMA_SERVER


def test_a_model_loaded_through_the_gateway_shows_on_its_servers_card(
    page: Page, modelyard: Callable[..., RunningApp], tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER)
    app.http.post("/api/models/sync")
    page.goto(f"{app.url}/#/providers")
    expect(page.locator("#provider-summary")).to_contain_text("running")
    expect(page.get_by_test_id("scheduler")).to_have_count(0)  # nothing loaded yet

    sdk = openai.OpenAI(base_url=app.url + "/v1", api_key="sk-local", max_retries=0)
    sdk.chat.completions.create(
        model="tiny.gguf", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    # The server that appeared for the file, without a reload of the page.
    row = page.locator('[data-testid="scheduler"] .schedule-row[data-model="tiny.gguf"]')
    expect(row).to_have_attribute("data-state", "loaded")
    card = page.locator("article.card", has=row)
    expect(card.get_by_test_id("state")).to_have_text("RUNNING")
    # model_ttl_s is 300: counted from the end of the request, shown as it stood when drawn.
    expect(row.get_by_test_id("schedule")).to_have_text(re.compile(r"idle unload in [45]m \d+s"))
    screenshot(page, "providers-schedule")

    stopped = app.http.post("/api/models/stop", json={"provider": "llamacpp", "name": "tiny.gguf"})
    assert stopped.status_code == 200, stopped.text
    expect(row).to_have_count(0)  # its server is gone with the model (the card too)
    expect(page.locator("article.card", has_text="tiny")).to_have_count(0)
