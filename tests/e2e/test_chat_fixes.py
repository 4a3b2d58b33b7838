"""The Chat page in a real browser: option values people use are saved (and a refused one
says why), and an answer another window is writing shows as such and appears when done."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from modelyard.instance_config import InstanceConfig
from tests.fakes.common import ReplyScript
from tests.support.app_server import RunningApp
from tests.support.chat import send as api_send


@pytest.fixture
def app(modelyard: Callable[..., RunningApp], ollama_server: Any) -> RunningApp:
    ollama_server.state.add_model("llama3.2")
    inst = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    running = modelyard([inst])
    assert running.http.post("/api/models/sync").status_code == 200
    return running


@pytest.fixture
def elsewhere(app: RunningApp) -> Iterator[Callable[..., None]]:
    """Send a message from "another window": a client of its own, in a thread."""
    threads: list[threading.Thread] = []
    clients: list[httpx.Client] = []

    def start(cid: str, content: str) -> None:
        client = httpx.Client(base_url=app.url, timeout=60)
        clients.append(client)
        thread = threading.Thread(target=api_send, args=(client, cid), kwargs={"content": content})
        thread.start()
        threads.append(thread)

    yield start
    for thread in threads:
        thread.join(60)
    for client in clients:
        client.close()


def new_conversation(app: RunningApp) -> str:
    resp = app.http.post("/api/conversations", json={"provider": "ollama", "model": "llama3.2"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def generating(app: RunningApp, cid: str) -> bool:
    return bool(app.http.get(f"/api/conversations/{cid}").json()["generating"])


def answers(page: Page) -> Any:
    return page.locator('#chat-messages .msg[data-role="assistant"]')


def test_common_context_sizes_are_saved_and_a_refused_value_says_why(
    page: Page, app: RunningApp
) -> None:
    cid = new_conversation(app)
    page.goto(f"{app.url}/#/chat/{cid}")
    expect(page.locator("#chat-title")).to_have_text("New chat")
    settings = page.locator("#chat-settings")
    ctx = settings.locator('input[name="ctx_size"]')
    save = settings.get_by_role("button", name="Save")

    for value in (4096, 2048, 8192, 512):
        page.locator("#chat-settings-toggle").click()
        ctx.fill(str(value))
        settings.locator('input[name="temperature"]').fill("0.33")
        save.click()
        expect(settings).to_be_hidden()
        options = app.http.get(f"/api/conversations/{cid}").json()["options"]
        assert options == {"ctx_size": value, "temperature": 0.33}

    # A value the API would refuse: Save says so, next to the field, and stores nothing.
    page.locator("#chat-settings-toggle").click()
    ctx.fill("10")
    save.click()
    problem = page.locator("#chat-settings-error")
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("Context size")
    expect(problem).to_contain_text("64")
    expect(settings).to_be_visible()
    expect(ctx).to_have_attribute("aria-invalid", "true")
    assert app.http.get(f"/api/conversations/{cid}").json()["options"]["ctx_size"] == 512

    ctx.fill("1024")  # corrected, it goes through
    save.click()
    expect(settings).to_be_hidden()
    assert app.http.get(f"/api/conversations/{cid}").json()["options"]["ctx_size"] == 1024


def test_an_answer_written_elsewhere_shows_as_written_and_appears_when_done(
    page: Page, app: RunningApp, ollama_server: Any, elsewhere: Callable[..., None]
) -> None:
    cid = new_conversation(app)
    slow = [f" w{i}" for i in range(12)]
    ollama_server.state.reply = ReplyScript(pieces=slow, token_delay=0.25)

    # Opened while another window's answer is being written: it shows as being written.
    elsewhere(cid, "First question")
    ollama_server.log.wait_for("/api/chat")
    assert generating(app, cid)
    page.goto(f"{app.url}/#/chat/{cid}")
    answer = answers(page).nth(0)
    expect(answer).to_have_attribute("data-state", "streaming")
    expect(answer.locator(".msg-status")).to_have_text("Another window is writing this answer…")
    expect(page.locator("#chat-stop")).to_be_visible()
    expect(page.locator("#chat-send")).to_be_hidden()
    # ... and once it is stored, the page shows it, without a reload.
    expect(answer).to_have_attribute("data-state", "complete", timeout=15000)
    expect(answer.locator(".msg-body")).to_have_text("".join(slow).strip())
    expect(answer.locator(".msg-status")).to_be_hidden()
    expect(page.locator("#chat-send")).to_be_visible()
    expect(page.locator('#chat-messages .msg[data-role="user"]')).to_have_text(["First question"])

    # A message sent elsewhere while the page is open appears too, and Stop stops it.
    ollama_server.state.reply = ReplyScript(pieces=slow * 10, token_delay=0.1)
    elsewhere(cid, "Second question")
    second = answers(page).nth(1)
    expect(second).to_have_attribute("data-state", "streaming")
    expect(page.locator('#chat-messages .msg[data-role="user"]')).to_have_count(2)
    page.locator("#chat-stop").click()
    expect(second).to_have_attribute("data-state", "stopped")
    expect(page.locator("#chat-send")).to_be_visible()
    stored = app.http.get(f"/api/conversations/{cid}").json()["messages"][-1]
    assert stored["state"] == "stopped"

    # The page's own messages still work as before.
    ollama_server.state.reply = ReplyScript(pieces=["Mine", "."])
    page.locator("#chat-input").fill("Third question")
    page.locator("#chat-input").press("Enter")
    expect(answers(page).nth(2)).to_have_attribute("data-state", "complete")
    expect(answers(page).nth(2).locator(".msg-body")).to_have_text("Mine.")
