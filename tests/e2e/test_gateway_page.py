"""The Gateway page in a real browser: snippets that name the address the browser used and a
model the gateway serves, a copy button that copies, and a request made with the openai SDK
appearing in the live log as it ends."""

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


def test_snippets_copy_and_live_log(
    page: Page, modelyard: Callable[..., RunningApp], tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    app = modelyard(monitor=False, models_dir=models, llama_server=LLAMA_SERVER)
    assert app.http.post("/api/models/sync").status_code == 200

    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.url)
    page.goto(f"{app.url}/#/gateway")
    expect(page.locator('#nav a[data-page="gateway"]')).to_have_attribute("aria-current", "page")
    openai_snippet = page.locator('[data-client="openai"] pre')
    expect(openai_snippet).to_contain_text(f'base_url="{app.url}/v1"')
    expect(openai_snippet).to_contain_text('model="tiny.gguf"')
    expect(page.locator('[data-client="ollama"] pre')).to_contain_text(f'"{app.url}/ollama"')
    expect(page.locator('[data-client="open_webui"] pre')).to_contain_text(f"{app.url}/v1")

    copy = page.get_by_role("button", name="Copy the OpenAI SDK (Python) snippet")
    copy.click()
    expect(copy).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == openai_snippet.inner_text()
    assert 'model="tiny.gguf"' in copied

    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    with openai.OpenAI(
        base_url=f"{app.url}/v1", api_key=app.services.api_keys.cli_key, max_retries=0
    ) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model="tiny.gguf",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=32,
                stream=True,
            )
        )
    assert chunks[-1].choices[0].finish_reason == "length", chunks[-1]  # all 32 tokens
    logged = page.locator('#gateway-requests tr[data-model="tiny.gguf"]')
    expect(logged).to_have_count(1)
    expect(logged).to_have_attribute("data-status", "200")
    cells = logged.locator("td")
    expect(cells.nth(6)).to_contain_text("ms")  # the time to the first token
    expect(cells.nth(7)).to_have_text(re.compile(r"^\d+\.\d$"))  # tokens/s over 32 tokens
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "gateway")
    page.locator("#gateway-requests").scroll_into_view_if_needed()
    screenshot(page, "gateway-log")
