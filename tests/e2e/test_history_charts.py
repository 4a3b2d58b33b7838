"""History charts in a real browser (uPlot, shipped under static/vendor): the System page's
time series and an instance's up/down timeline on the Providers page, drawn from the samples
modelyard keeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from modelyard.instance_config import InstanceConfig
from tests.e2e.conftest import screenshot
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
