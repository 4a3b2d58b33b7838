"""The Audit page in a real browser: entries filtered by key, action and outcome as one types,
and the export downloaded as a file whose rows are the ones shown."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.e2e.conftest import screenshot
from tests.support.app_server import RunningApp
from tests.support.servers import free_port


def test_filter_and_export(
    page: Page, modelyard: Callable[..., RunningApp], tmp_path: Path
) -> None:
    app = modelyard(monitor=False)
    for n in range(3):
        body = {"id": f"side{n}", "base_url": f"http://127.0.0.1:{free_port()}"}
        assert app.http.post("/api/providers/openai_compat/instances", json=body).status_code == 201
    assert app.http.post("/api/providers/openai_compat/instances", json={"id": "x"}).is_error
    evil = {"Origin": "https://evil.example"}
    assert app.http.post("/api/providers/ollama/instances", headers=evil).status_code == 403

    page.goto(f"{app.url}/#/audit")
    rows = page.locator("#audit-rows tr")
    expect(rows).to_have_count(5)
    page.select_option('select[name="outcome"]', "refused")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("cross_origin_forbidden")
    page.select_option('select[name="outcome"]', "")
    page.fill('input[name="action"]', "openai_compat")
    expect(rows).to_have_count(4)
    page.select_option('select[name="outcome"]', "ok")
    expect(rows).to_have_count(3)
    screenshot(page, "audit")

    with page.expect_download() as caught:
        page.click("#audit-csv")
    saved = tmp_path / caught.value.suggested_filename
    caught.value.save_as(saved)
    assert saved.name.startswith("audit-") and saved.suffix == ".csv"
    exported = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [row["outcome"] for row in exported] == ["ok"] * 3
    assert all("openai_compat" in row["path"] for row in exported)
