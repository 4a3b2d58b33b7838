"""History charts in a real browser (uPlot, shipped under static/vendor): the System page's
time series, an instance's up/down timeline on the Providers page and a model's use through
the gateway on the Models page, drawn from the samples modelyard keeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
from playwright.sync_api import Page, expect

from modelyard.instance_config import InstanceConfig
from tests.e2e.conftest import screenshot
from tests.fakes.common import ReplyScript
from tests.support.app_server import RunningApp
from tests.support.waiting import wait_until


def test_system_charts_and_an_up_timeline(
    page: Page, modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    app = modelyard(
        [InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)],
        history_sample_s=1,
    )

    def samples() -> int:
        answer = app.http.get(
            "/api/history", params={"series": "provider.ollama/default.up", "range": "1h"}
        )
        return len(answer.json()["series"]["provider.ollama/default.up"])

    wait_until(lambda: samples() >= 3, "three samples")
    page.goto(f"{app.url}/#/system")
    cpu = page.locator('[data-chart="system.cpu_percent"]')
    expect(cpu.locator("canvas")).to_be_visible()
    assert int(cpu.get_attribute("data-points") or 0) >= 3
    expect(page.locator('[data-chart="downloads.bytes_per_s"] canvas')).to_be_visible()
    page.select_option('select[name="history-range"]', "7d")  # the 5-minute averages
    expect(cpu).to_have_attribute("data-points", "0")  # none yet: a minute-old modelyard
    page.select_option('select[name="history-range"]', "1h")
    expect(cpu).not_to_have_attribute("data-points", "0")
    screenshot(page, "system-history")

    page.goto(f"{app.url}/#/providers")
    card = page.locator('article[data-key="ollama/default"]')
    card.get_by_role("button", name="History").click()
    timeline = card.get_by_test_id("up-timeline")
    expect(timeline.locator("canvas")).to_be_visible()
    assert int(timeline.get_attribute("data-points") or 0) >= 3


def test_a_models_answers_through_the_gateway_are_charted_in_its_details(
    page: Page, modelyard: Callable[..., RunningApp], openai_server: Any
) -> None:
    openai_server.state.models = ["busy", "idle"]
    openai_server.state.reply = ReplyScript(pieces=["one ", "two ", "three"], token_delay=0.02)
    app = modelyard(
        [InstanceConfig(provider="openai_compat", id="stand-in", base_url=openai_server.url)],
        history_sample_s=1,
    )
    assert app.http.post("/api/models/sync").status_code == 200
    sdk = openai.OpenAI(
        base_url=app.url + "/v1", api_key=app.services.api_keys.cli_key, max_retries=0
    )
    for _ in range(3):
        answer = sdk.chat.completions.create(
            model="busy", messages=[{"role": "user", "content": "count"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    name = "model.openai_compat/stand-in/busy.answers_per_s"

    def points() -> int:
        answer = app.http.get("/api/history", params={"series": name, "range": "1h"})
        return len(answer.json()["series"][name])

    wait_until(lambda: points() >= 1, "a sample of the model's answers")
    page.goto(f"{app.url}/#/models")
    page.locator('#model-list tr[data-name="busy"] .model-name').click()
    usage = page.locator("#model-drawer").get_by_test_id("usage")
    for measure in ("answers_per_s", "tokens_per_s", "ttft_ms"):
        chart = usage.locator(f'[data-chart="{measure}"]')
        expect(chart.locator("canvas")).to_be_visible()
        assert int(chart.get_attribute("data-points") or 0) >= 1, measure
    screenshot(page, "model-usage")

    page.keyboard.press("Escape")
    page.locator('#model-list tr[data-name="idle"] .model-name').click()
    idle = page.locator("#model-drawer").get_by_test_id("usage")
    expect(idle).to_contain_text("No answer through the gateway or in a chat in this range.")
    expect(idle.locator('[data-chart="answers_per_s"]')).to_have_attribute("data-points", "0")
