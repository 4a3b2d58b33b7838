"""The dashboard's API-key prompt (issue 18, item 6): when every request needs a key, the page
asks once for all the requests waiting on it; a refused key is not asked for again and again
(the page says so, and a reload asks again); a good key is kept and used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Dialog, Page, expect

from modelyard.instance_config import InstanceConfig
from tests.support.app_server import RunningApp

ADMIN = "admin-secret"


def test_a_refused_key_is_asked_for_once_and_a_good_one_is_kept(
    page: Page, modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    instance = InstanceConfig(provider="ollama", id="box", base_url=ollama_server.url)
    app = modelyard([instance], monitor=False, api_key=ADMIN, local_trust="none")
    answers = ["not-the-key"]
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        if answers:
            dialog.accept(answers.pop(0))
        else:
            dialog.dismiss()

    page.on("dialog", answer)
    page.goto(f"{app.url}/#/providers")
    hint = page.locator(".toast-hint").first
    expect(hint).to_contain_text("refused")
    # Other pages' requests meet the same 401: nobody is asked again.
    page.goto(f"{app.url}/#/models")
    page.goto(f"{app.url}/#/downloads")
    expect(page.locator(".toast-hint").first).to_contain_text("refused")
    assert len(asked) == 1, asked
    assert page.evaluate("localStorage.getItem('modelyard.apiKey')") is None

    page.goto(f"{app.url}/#/providers")
    expect(page.locator(".toast-hint").first).to_contain_text("refused")
    answers.append(ADMIN)
    page.reload()  # one navigation: another while the prompt is up would dismiss it
    expect(page.get_by_text("box").first).to_be_visible()
    assert len(asked) == 2, asked
    assert page.evaluate("localStorage.getItem('modelyard.apiKey')") == ADMIN
