"""The Models page shows what the scheduler says of each model, live, in Chromium: a model
loaded by a gateway request counts down to its idle unload, and one evicted for another
within the memory budget says why."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import openai
from playwright.sync_api import Page, expect

from modelyard.gguf.metadata import read_gguf
from modelyard.models.memory import default_context
from modelyard.runtimes.resources import estimate_memory
from tests.support.app_server import RunningApp
from tests.support.llama import LLAMA_SERVER


def test_the_models_page_shows_the_schedulers_view_live(
    page: Page, modelyard: Callable[..., RunningApp], tmp_path: Path, tiny_gguf: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(tiny_gguf, models / name)
    info = read_gguf(models / "a.gguf")
    need = estimate_memory(
        info, file_size=tiny_gguf.stat().st_size, ctx_size=default_context(info, 4096)
    ).total
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER, memory_budget_bytes=need * 3 // 2)
    app.http.post("/api/models/sync")
    page.goto(f"{app.url}/#/models")
    a = page.locator('#model-list tr[data-name="a.gguf"]')
    b = page.locator('#model-list tr[data-name="b.gguf"]')
    expect(a.get_by_test_id("status")).to_have_text("available")
    expect(a.get_by_test_id("schedule")).to_have_count(0)  # nothing the scheduler has seen

    sdk = openai.OpenAI(
        base_url=app.url + "/v1", api_key=app.services.api_keys.cli_key, max_retries=0
    )
    hi = [{"role": "user", "content": "hi"}]
    sdk.chat.completions.create(model="a.gguf", messages=hi, max_tokens=2)
    expect(a.get_by_test_id("status")).to_have_text("loaded")
    # model_ttl_s is 300: counted from the end of the request, shown as it stood when drawn.
    expect(a.get_by_test_id("schedule")).to_have_text(re.compile(r"idle unload in [45]m \d+s"))

    sdk.chat.completions.create(model="b.gguf", messages=hi, max_tokens=2)
    expect(b.get_by_test_id("status")).to_have_text("loaded")
    expect(a.get_by_test_id("status")).to_have_text("available")
    expect(a.get_by_test_id("schedule")).to_have_text(
        "evicted to make room for llamacpp/local/b.gguf"
    )
