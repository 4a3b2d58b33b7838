"""Chat against the genuine llama-server on a generated GGUF: streaming token by token,
persistence, stopping (explicitly and by closing the request) with the slot freed, starting a
stopped managed server first, and trimming to a tiny context."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.chat import context
from modelyard.chat.types import ChatOptions, Target
from modelyard.instance_config import InstanceConfig
from tests.chat.test_context import run
from tests.support.app_server import RunningApp
from tests.support.chat import (
    events_of,
    llama_server,
    send,
    slot_busy,
    text_of,
)
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import closed_port, free_port
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.waiting import wait_until

# Long enough that an answer left alone would run for a minute: a stop is what ends it.
LONG_ANSWER = 20_000


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One llama-server (one slot, 32k context) shared by the tests of this module."""
    work = tmp_path_factory.mktemp("llama")
    model = write_tiny_gguf(work / "long.gguf", context_length=32768)
    with llama_server(model, work / "server.log") as url:
        yield url


def external(url: str) -> InstanceConfig:
    return InstanceConfig(provider="llamacpp", id="tiny", base_url=url)


def new_chat(app: RunningApp, **body: Any) -> str:
    resp = app.http.post(
        "/api/conversations", json={"provider": "llamacpp", "model": "tiny", **body}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_a_streamed_answer_is_persisted_and_reloads(
    modelyard: Callable[..., RunningApp], llama: str
) -> None:
    app = modelyard([external(llama)])
    cid = new_chat(app, system="You are a tiny model.")
    events = send(app.http, cid, content="Tell me a story.", options={"max_tokens": 24})

    assert events[0]["type"] == "start" and events[-1]["type"] == "done"
    tokens = [e for e in events if e["type"] == "token"]
    done = events[-1]
    # One event per generated token, as llama.cpp produced them.
    assert done["usage"]["completion_tokens"] == 24
    assert len(tokens) >= 20
    assert done["state"] == "complete" and done["finish_reason"] == "length"
    assert done["ttft_ms"] > 0 and done["tokens_per_s"] > 0
    assert done["usage"]["prompt_tokens"] > 0

    conversation = app.http.get(f"/api/conversations/{cid}").json()
    assert conversation["title"] == "Tell me a story."
    user, answer = conversation["messages"]
    assert (user["role"], user["content"]) == ("user", "Tell me a story.")
    assert answer["role"] == "assistant" and answer["content"] == text_of(events)
    assert answer["state"] == "complete"
    assert (answer["provider"], answer["instance_id"], answer["model"]) == (
        "llamacpp",
        "tiny",
        "tiny",
    )
    assert answer["ttft_ms"] == done["ttft_ms"]
    assert answer["usage"] == done["usage"]
    listed = app.http.get("/api/conversations").json()["conversations"]
    assert [(c["id"], c["message_count"]) for c in listed] == [(cid, 2)]


def test_stop_keeps_the_partial_answer_and_frees_the_slot(
    modelyard: Callable[..., RunningApp], llama: str
) -> None:
    app = modelyard([external(llama)])
    cid = new_chat(app)
    body = {"content": "Write forever.", "options": {"max_tokens": LONG_ANSWER}}
    with app.http.stream("POST", f"/api/conversations/{cid}/messages", json=body) as resp:
        events = events_of(resp.iter_lines())
        received = []
        for event in events:
            received.append(event)
            if sum(e["type"] == "token" for e in received) == 5:
                break
        assert slot_busy(llama)
        stopped = app.http.post(f"/api/conversations/{cid}/stop")
        assert stopped.status_code == 200 and stopped.json()["stopped"] is True
        received += list(events)

    done = received[-1]
    assert done["type"] == "done" and done["state"] == "stopped"
    wait_until(lambda: not slot_busy(llama))
    answer = app.http.get(f"/api/conversations/{cid}").json()["messages"][-1]
    assert answer["state"] == "stopped"
    assert answer["content"] == text_of(received) and answer["content"]
    assert 5 <= answer["usage"]["completion_tokens"] < LONG_ANSWER
    # Stopping again is harmless.
    assert app.http.post(f"/api/conversations/{cid}/stop").json()["stopped"] is False


def test_closing_the_request_stops_the_generation_too(
    modelyard: Callable[..., RunningApp], llama: str
) -> None:
    app = modelyard([external(llama)])
    cid = new_chat(app)
    body = {"content": "Write forever.", "options": {"max_tokens": LONG_ANSWER}}
    with app.http.stream("POST", f"/api/conversations/{cid}/messages", json=body) as resp:
        events = events_of(resp.iter_lines())  # held: dropping it would close the response
        count = 0
        for event in events:
            count += event["type"] == "token"
            if count == 3:
                break
        assert slot_busy(llama)

    def answer() -> dict[str, Any]:
        return dict(app.http.get(f"/api/conversations/{cid}").json()["messages"][-1])

    wait_until(lambda: answer()["state"] == "stopped")
    wait_until(lambda: not slot_busy(llama))
    assert answer()["content"]
    # The conversation is free for the next message at once.
    events = send(app.http, cid, content="Again, briefly.", options={"max_tokens": 4})
    assert events[-1]["type"] == "done" and events[-1]["state"] == "complete"


def test_a_stopped_managed_server_is_started_first_and_a_tiny_context_is_respected(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path
) -> None:
    inst = InstanceConfig(
        provider="llamacpp",
        id="small",
        base_url=f"http://127.0.0.1:{free_port()}",
        managed=True,
        model=str(tiny_gguf),
        ctx_size=256,
    )
    app = modelyard([inst], llama_server=LLAMA_SERVER)
    cid = app.http.post(
        "/api/conversations",
        json={"provider": "llamacpp", "model": "small", "system": "Keep this system prompt."},
    ).json()["id"]

    first = send(app.http, cid, content="Hello!", options={"max_tokens": 8})
    statuses = [e["text"] for e in first if e["type"] == "status"]
    assert any("Starting llamacpp/small" in s for s in statuses), statuses
    assert first[-1]["type"] == "done" and first[-1]["state"] == "complete"

    # Each message is about half of the 256-token context: older turns must go.
    long = "Please remember this long sentence about the weather and the sea. " * 2
    last: list[dict[str, Any]] = []
    for i in range(4):
        last = send(app.http, cid, content=f"{i}: {long}", options={"max_tokens": 8})
        assert last[-1]["type"] == "done", last[-1]
        assert last[-1]["state"] == "complete"
    done = last[-1]
    assert done["trimmed"] > 0
    assert done["usage"]["prompt_tokens"] <= 256
    assert any("oldest message" in e["text"] for e in last if e["type"] == "status")


def test_a_gguf_file_of_the_models_directory_is_started_for_its_first_message(
    modelyard: Callable[..., RunningApp], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    write_tiny_gguf(models / "family" / "tiny.gguf")
    app = modelyard([], models_dir=models, llama_server=LLAMA_SERVER)
    assert app.http.post("/api/models/sync").status_code == 200
    (listed,) = app.http.get("/api/models/list").json()["models"]
    assert (listed["name"], listed["status"]) == ("family/tiny.gguf", "available")

    created = app.http.post(
        "/api/conversations",
        json={"provider": "llamacpp", "model": "family/tiny.gguf", "instance_id": "local"},
    )
    assert created.status_code == 201, created.text
    events = send(app.http, created.json()["id"], content="Hi", options={"max_tokens": 6})
    statuses = [e["text"] for e in events if e["type"] == "status"]
    assert statuses == ["Starting family/tiny.gguf…"]
    done = events[-1]
    assert done["type"] == "done" and done["usage"]["completion_tokens"] == 6
    model = app.http.get("/api/models/list").json()["models"][0]
    assert model["status"] == "loaded"
    # The next message goes to the running server without starting anything.
    again = send(app.http, created.json()["id"], content="Again", options={"max_tokens": 6})
    assert [e["type"] for e in again if e["type"] == "status"] == []
    assert again[-1]["instance_id"] == done["instance_id"]


def test_a_window_guessed_while_the_server_did_not_answer_is_looked_up_again(
    llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime that did not answer /props (still starting, or busy) gets asked again on the
    next message rather than the stand-in value being used for half a minute."""
    monkeypatch.setattr(context, "GUESS_TTL_S", 0.0)  # the next message comes "later"
    n_ctx = httpx.get(f"{llama}/props").json()["default_generation_settings"]["n_ctx"]
    down = Target("llamacpp", "small", f"http://127.0.0.1:{closed_port()}", "", "m")

    async def windows_seen() -> tuple[int, int]:
        async with httpx.AsyncClient(timeout=5) as http:
            windows = context.ContextWindows(http, default=n_ctx * 2)
            first = await windows.window(down, ChatOptions())
            # The same model of the same instance, now answering.
            up = dataclasses.replace(down, base_url=llama)
            return first, await windows.window(up, ChatOptions())

    assert run(windows_seen()) == (n_ctx * 2, n_ctx)
