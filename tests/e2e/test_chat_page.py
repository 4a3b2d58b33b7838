"""The Chat page in a real browser: streaming, stop, switching model, regenerate, safe
Markdown (model output never runs), the conversation list, settings, keyboard, 360 px."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from modelyard.instance_config import InstanceConfig
from tests.e2e.conftest import screenshot
from tests.fakes.common import ReplyScript
from tests.support.app_server import RunningApp

MARKDOWN_REPLY = [
    "Here is **bold**, *italic* and `code`.\n\n",
    "```python\nprint('hi')\n```\n\n",
    "- one\n- two\n\n",
    "[docs](https://example.org/docs)",
]
HOSTILE_REPLY = [
    "Look: <img src=x onerror=alert(1)> and ",
    "<script>alert(2)</script> and ",
    "[click me](javascript:alert(3)) ",
    "![pic](https://example.org/x.png)",
]


@pytest.fixture
def app(modelyard: Callable[..., RunningApp], ollama_server: Any) -> RunningApp:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.add_model("qwen2.5:0.5b")
    inst = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    running = modelyard([inst])
    assert running.http.post("/api/models/sync").status_code == 200
    return running


def answers(page: Page) -> Any:
    return page.locator('#chat-messages .msg[data-role="assistant"]')


def send(page: Page, text: str) -> None:
    page.locator("#chat-input").fill(text)
    page.locator("#chat-input").press("Enter")


def stored_messages(app: RunningApp) -> list[dict[str, Any]]:
    (conversation,) = app.http.get("/api/conversations").json()["conversations"]
    return list(app.http.get(f"/api/conversations/{conversation['id']}").json()["messages"])


def test_stream_stop_switch_regenerate_and_safe_markdown(
    page: Page, app: RunningApp, ollama_server: Any
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{app.url}/#/chat")
    expect(page.locator("#chat-model option")).to_have_count(2)

    # Tokens stream in: the answer shows its first words while it is still being written.
    ollama_server.state.reply = ReplyScript(
        pieces=["Streaming", " one", " word", " at", " a", " time."], token_delay=0.15
    )
    send(page, "Hello there")
    first = answers(page).nth(0)
    expect(first).to_have_attribute("data-state", "streaming")
    expect(first.locator(".msg-body")).to_contain_text("Streaming one")
    expect(first).to_have_attribute("data-state", "complete", timeout=10000)
    expect(first.locator(".msg-body")).to_have_text("Streaming one word at a time.")
    expect(first.get_by_test_id("meta")).to_contain_text("tok/s")
    expect(first.get_by_test_id("meta")).to_contain_text("first token")
    expect(page.locator("#chat-title")).to_have_text("Hello there")
    expect(page.locator('.conv-item[aria-current="true"]')).to_contain_text("Hello there")

    # Stop one: the partial answer stays, marked stopped, here and in the store.
    ollama_server.state.reply = ReplyScript(pieces=[f" w{i}" for i in range(300)], token_delay=0.03)
    send(page, "Talk for a long time")
    second = answers(page).nth(1)
    expect(second.locator(".msg-body")).to_contain_text("w5")
    page.locator("#chat-stop").click()
    expect(second).to_have_attribute("data-state", "stopped")
    expect(second.locator(".msg-stopped")).to_have_text("stopped")
    expect(page.locator("#chat-send")).to_be_visible()
    assert stored_messages(app)[-1]["state"] == "stopped"

    # Switch model mid-conversation; the next answer is the new model's.
    ollama_server.state.reply = ReplyScript(pieces=MARKDOWN_REPLY)
    page.locator("#chat-model").select_option(label="qwen2.5:0.5b")
    expect(page.locator(".toast")).to_contain_text("Switched to qwen2.5:0.5b")
    send(page, "Show me some Markdown")
    third = answers(page).nth(2)
    expect(third).to_have_attribute("data-state", "complete")
    expect(third.locator(".msg-model")).to_have_text("qwen2.5:0.5b")
    expect(third.locator("strong")).to_have_text("bold")
    expect(third.locator("em")).to_have_text("italic")
    expect(third.locator(".md-codeblock code")).to_have_text("print('hi')")
    third.locator(".md-copy").click()
    expect(third.locator(".md-copy")).to_have_text("Copied")
    expect(third.locator("li")).to_have_count(2)
    expect(third.locator("a.md-link")).to_have_attribute("href", "https://example.org/docs")
    assert [m["model"] for m in stored_messages(app) if m["role"] == "assistant"] == [
        "llama3.2:latest",
        "llama3.2:latest",
        "qwen2.5:0.5b",
    ]
    page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")
    screenshot(page, "chat")

    # Regenerate the last answer.
    ollama_server.state.reply = ReplyScript(pieces=["A", " fresh", " answer."])
    third.locator('[data-action="regenerate"]').click()
    expect(answers(page)).to_have_count(3)
    expect(answers(page).nth(2).locator(".msg-body")).to_have_text("A fresh answer.")

    # Model output that tries to inject HTML or script shows as text and runs nothing.
    ollama_server.state.reply = ReplyScript(pieces=HOSTILE_REPLY)
    send(page, "Say something nasty")
    hostile = answers(page).nth(3)
    expect(hostile).to_have_attribute("data-state", "complete")
    body = hostile.locator(".msg-body")
    expect(body).to_contain_text("<img src=x onerror=alert(1)>")
    expect(body).to_contain_text("<script>alert(2)</script>")
    expect(body).to_contain_text("[click me](javascript:alert(3))")
    assert page.locator("#chat-messages img").count() == 0
    assert page.locator("#chat-messages script").count() == 0
    assert page.locator('#chat-messages a[href^="javascript"]').count() == 0
    expect(body.locator("a.md-link")).to_have_attribute("href", "https://example.org/x.png")
    page.wait_for_timeout(300)
    assert dialogs == []


def test_conversations_settings_keyboard_and_small_screens(
    page: Page, app: RunningApp, ollama_server: Any
) -> None:
    ollama_server.state.reply = ReplyScript(pieces=["Fine", ", thanks."])
    older = app.http.post(
        "/api/conversations", json={"provider": "ollama", "model": "llama3.2", "title": "Older"}
    ).json()
    page.goto(f"{app.url}/#/chat")
    expect(page.locator(".conv-item")).to_have_count(1)

    # Settings of a new chat apply when it is created by the first message.
    page.locator("#chat-settings-toggle").click()
    page.locator("#chat-system").fill("You are terse.")
    page.locator('#chat-settings input[name="temperature"]').fill("0.4")
    page.locator("#chat-settings").get_by_role("button", name="Save").click()
    expect(page.locator("#chat-settings")).to_be_hidden()

    # Shift+Enter adds a line; Enter sends.
    box = page.locator("#chat-input")
    box.fill("First line")
    box.press("Shift+Enter")
    box.type("second line")
    assert box.input_value() == "First line\nsecond line"
    box.press("Enter")
    expect(answers(page).nth(0)).to_have_attribute("data-state", "complete")
    expect(page.locator('#chat-messages .msg[data-role="user"] .msg-body')).to_have_text(
        "First line\nsecond line"
    )
    sent = ollama_server.log.for_path("/api/chat")[-1].json()
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent["options"] == {"temperature": 0.4}
    expect(page.locator(".conv-item")).to_have_count(2)

    # Rename and delete from the list.
    item = page.locator(f'.conv-item[data-id="{older["id"]}"]')
    item.locator('[data-action="rename"]').click()
    field = page.locator(".conv-rename")
    field.fill("Renamed chat")
    field.press("Enter")
    expect(item).to_contain_text("Renamed chat")
    assert app.http.get(f"/api/conversations/{older['id']}").json()["title"] == "Renamed chat"
    item.locator('[data-action="delete"]').click()
    page.locator("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator(".conv-item")).to_have_count(1)
    assert app.http.get(f"/api/conversations/{older['id']}").status_code == 404

    # 360 px wide: the list is a drawer behind the menu button, nothing overflows.
    page.set_viewport_size({"width": 360, "height": 740})
    page.reload()
    expect(page.locator("#chat-input")).to_be_visible()
    expect(page.locator(".chat-side")).not_to_be_in_viewport()
    page.locator(".chat-menu").click()
    expect(page.locator(".chat-side")).to_be_in_viewport()
    page.locator(".conv-item .conv-open").first.click()
    expect(page.locator(".chat-side")).not_to_be_in_viewport()
    expect(answers(page)).to_have_count(1)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, width
    screenshot(page, "chat-mobile")
