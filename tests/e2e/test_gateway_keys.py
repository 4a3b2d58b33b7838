"""The Gateway page's keys and usage sections in a real browser: a key created with the form
(its secret shown once), listed by prefix, used by the OpenAI SDK against the genuine
llama-server, its usage charted and totalled, then revoked after a confirmation."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Page, expect

from tests.support.app_server import RunningApp
from tests.support.llama import LLAMA_SERVER


def test_create_use_chart_and_revoke_a_key(
    page: Page, modelyard: Callable[..., RunningApp], tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER, monitor=False)
    assert app.http.post("/api/models/sync").status_code == 200

    page.goto(f"{app.url}/#/gateway")
    page.fill("#key-name", "editor")
    page.fill("#key-models", "tiny*")
    page.fill("#key-tokens_per_minute", "5000")
    page.click("#key-form button[type=submit]")
    secret = page.locator("#key-secret-value")
    expect(secret).to_be_visible()
    key = secret.inner_text().strip()
    assert key.startswith("my_")
    row = page.locator(f'#key-rows tr[data-prefix="{key[:8]}"]')
    expect(row).to_contain_text(f"{key[:8]}…")
    expect(row).to_contain_text("tiny*")
    expect(row).to_contain_text("5000")
    assert key not in page.locator("#keys-table").inner_text()

    sdk = openai.OpenAI(base_url=app.url + "/v1", api_key=key, max_retries=0)
    done = sdk.chat.completions.create(
        model="tiny.gguf",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=3,
    )
    assert done.usage is not None
    page.reload()
    chart = page.locator("#usage-by-key")
    expect(chart).to_have_attribute("data-points", "1")
    expect(page.locator("#usage-by-model")).to_have_attribute("data-points", "1")
    totals = page.locator(f'#usage-rows tr[data-prefix="{key[:8]}"]')
    expect(totals).to_contain_text(str(done.usage.completion_tokens))
    expect(totals).to_contain_text("llamacpp/local/tiny.gguf")

    page.locator(f'#key-rows tr[data-prefix="{key[:8]}"] button').click()
    page.locator("dialog button[value=ok]").click()
    expect(page.locator(f'#key-rows tr[data-prefix="{key[:8]}"]')).to_have_count(0)
    with pytest.raises(openai.AuthenticationError):
        sdk.models.list()
