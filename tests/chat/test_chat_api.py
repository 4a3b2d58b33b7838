"""The conversations API (SPEC §8): CRUD, bad input, switching models, regenerating, stopping,
one answer at a time, trimming to the context, and answers interrupted by a restart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelyard.chat.store import ConversationStore
from modelyard.instance_config import InstanceConfig
from tests.fakes.common import ReplyScript
from tests.support.app_server import RunningApp
from tests.support.chat import events_of, send, text_of
from tests.support.waiting import wait_until


@pytest.fixture
def app(modelyard: Callable[..., RunningApp], ollama_server: Any) -> RunningApp:
    """modelyard with the Ollama stand-in holding two models."""
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.add_model("qwen2.5:0.5b")
    inst = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    return modelyard([inst])


def create(app: RunningApp, **body: Any) -> dict[str, Any]:
    resp = app.http.post(
        "/api/conversations", json={"provider": "ollama", "model": "llama3.2", **body}
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body = dict(resp.json())
    assert body["code"] == code and body["hint"]
    return body


def test_create_list_rename_and_delete(app: RunningApp) -> None:
    first = create(app, title="First", system="You are helpful.")
    assert first["title"] == "First" and first["instance_id"] == "default"
    assert first["system"] == "You are helpful." and first["message_count"] == 0
    second = create(app, options={"temperature": 0.3})
    assert second["title"] == "New chat" and second["options"] == {"temperature": 0.3}

    send(app.http, first["id"], content="Hello")  # activity moves it to the top
    listed = app.http.get("/api/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [first["id"], second["id"]]
    assert [c["message_count"] for c in listed] == [2, 0]
    assert "messages" not in listed[0]

    renamed = app.http.patch(
        f"/api/conversations/{first['id']}",
        json={"title": "Renamed", "system": "Be brief.", "options": {"max_tokens": 64}},
    )
    assert renamed.status_code == 200
    body = renamed.json()
    assert (body["title"], body["system"], body["options"]) == (
        "Renamed",
        "Be brief.",
        {"max_tokens": 64},
    )
    assert len(body["messages"]) == 2

    assert app.http.delete(f"/api/conversations/{first['id']}").status_code == 204
    problem(app.http.get(f"/api/conversations/{first['id']}"), 404, "conversation_not_found")
    assert [c["id"] for c in app.http.get("/api/conversations").json()["conversations"]] == [
        second["id"]
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"provider": "nope", "model": "x"}, 404, "unknown_provider", id="provider"),
        pytest.param(
            {"provider": "ollama", "model": "x", "instance_id": "ghost"},
            404,
            "instance_not_found",
            id="instance",
        ),
        pytest.param({"provider": "ollama"}, 422, "validation_error", id="no-model"),
        pytest.param(
            {"provider": "ollama", "model": "x", "options": {"temperature": 5}},
            422,
            "validation_error",
            id="temperature",
        ),
        pytest.param(
            {"provider": "ollama", "model": "x", "options": {"seed": 1}},
            422,
            "validation_error",
            id="unknown-option",
        ),
    ],
)
def test_bad_conversations_are_refused(
    app: RunningApp, body: dict[str, Any], status: int, code: str
) -> None:
    problem(app.http.post("/api/conversations", json=body), status, code)


def test_bad_messages_are_refused(app: RunningApp) -> None:
    cid = create(app)["id"]
    url = f"/api/conversations/{cid}/messages"
    problem(app.http.post(url, json={"content": "   "}), 400, "empty_message")
    problem(app.http.post(url, json={"content": "x", "regenerate": True}), 400, "invalid_message")
    problem(app.http.post(url, json={"regenerate": True}), 409, "nothing_to_regenerate")
    problem(
        app.http.post(url, json={"content": "x", "options": {"top_p": 2}}),
        422,
        "validation_error",
    )
    problem(
        app.http.post("/api/conversations/nope/messages", json={"content": "x"}),
        404,
        "conversation_not_found",
    )
    problem(
        app.http.patch(f"/api/conversations/{cid}", json={"title": ""}), 422, "validation_error"
    )
    problem(app.http.post("/api/conversations/nope/stop"), 404, "conversation_not_found")
    assert app.http.get(f"/api/conversations/{cid}").json()["messages"] == []


def test_switching_model_mid_conversation(app: RunningApp, ollama_server: Any) -> None:
    cid = create(app)["id"]
    send(app.http, cid, content="one")
    switched = app.http.patch(f"/api/conversations/{cid}", json={"model": "qwen2.5:0.5b"})
    assert switched.json()["model"] == "qwen2.5:0.5b"
    send(app.http, cid, content="two")
    events = send(app.http, cid, content="three", model="llama3.2")
    assert events[0]["model"] == "llama3.2" and events[-1]["model"] == "llama3.2"

    conversation = app.http.get(f"/api/conversations/{cid}").json()
    answers = [m for m in conversation["messages"] if m["role"] == "assistant"]
    assert [a["model"] for a in answers] == ["llama3.2", "qwen2.5:0.5b", "llama3.2"]
    assert conversation["model"] == "llama3.2"
    sent = [r.json()["model"] for r in ollama_server.log.for_path("/api/chat")]
    assert sent == ["llama3.2", "qwen2.5:0.5b", "llama3.2"]
    # The second model saw the whole conversation so far.
    second = ollama_server.log.for_path("/api/chat")[1].json()["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]


def test_regenerate_replaces_the_last_answer(app: RunningApp, ollama_server: Any) -> None:
    cid = create(app)["id"]
    ollama_server.state.reply = ReplyScript(pieces=["first", " try"])
    send(app.http, cid, content="Hi")
    ollama_server.state.reply = ReplyScript(pieces=["second", " try"])
    events = send(app.http, cid, regenerate=True)
    assert text_of(events) == "second try"
    messages = app.http.get(f"/api/conversations/{cid}").json()["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "Hi"),
        ("assistant", "second try"),
    ]
    regenerated = ollama_server.log.for_path("/api/chat")[-1].json()["messages"]
    assert regenerated == [{"role": "user", "content": "Hi"}]


def test_stop_endpoint_closes_the_upstream_stream(app: RunningApp, ollama_server: Any) -> None:
    ollama_server.state.reply = ReplyScript(pieces=[f" w{i}" for i in range(400)], token_delay=0.02)
    cid = create(app)["id"]
    with app.http.stream(
        "POST", f"/api/conversations/{cid}/messages", json={"content": "Talk"}
    ) as resp:
        events = events_of(resp.iter_lines())
        received = [next(events) for _ in range(4)]
        assert received[-1]["type"] == "token"
        # One answer at a time per conversation.
        busy = app.http.post(f"/api/conversations/{cid}/messages", json={"content": "more"})
        problem(busy, 409, "generation_in_progress")
        assert app.http.get(f"/api/conversations/{cid}").json()["generating"] is True
        assert app.http.post(f"/api/conversations/{cid}/stop").json()["stopped"] is True
        received += list(events)
    assert received[-1]["type"] == "done" and received[-1]["state"] == "stopped"
    upstream = ollama_server.log.for_path("/api/chat")[-1]
    assert upstream.wait_finished(10) and upstream.disconnected
    answer = app.http.get(f"/api/conversations/{cid}").json()["messages"][-1]
    assert answer["state"] == "stopped" and answer["content"] == text_of(received)
    assert 0 < len(answer["content"].split()) < 400


def test_trimming_keeps_the_system_prompt_and_the_newest_turns(
    app: RunningApp, ollama_server: Any
) -> None:
    ollama_server.state.reply = ReplyScript(pieces=["ok"])
    cid = create(app, system="SYSTEM PROMPT", options={"ctx_size": 128, "max_tokens": 16})["id"]
    for i in range(6):
        events = send(app.http, cid, content=f"message {i}: " + "lorem ipsum " * 8)
    assert events[-1]["trimmed"] > 0
    sent = ollama_server.log.for_path("/api/chat")[-1].json()
    messages = sent["messages"]
    assert messages[0] == {"role": "system", "content": "SYSTEM PROMPT"}
    assert messages[-1]["content"].startswith("message 5:")
    assert messages[1]["role"] == "user" and not messages[1]["content"].startswith("message 0:")
    assert sent["options"]["num_ctx"] == 128
    # Every turn is still stored: trimming only changes what the model sees.
    assert len(app.http.get(f"/api/conversations/{cid}").json()["messages"]) == 12


def test_deleting_a_conversation_stops_its_answer(app: RunningApp, ollama_server: Any) -> None:
    ollama_server.state.reply = ReplyScript(pieces=["x"] * 200, token_delay=0.02)
    cid = create(app)["id"]
    with app.http.stream(
        "POST", f"/api/conversations/{cid}/messages", json={"content": "Talk"}
    ) as resp:
        events = events_of(resp.iter_lines())
        next(events), next(events)
        assert app.http.delete(f"/api/conversations/{cid}").status_code == 204
        rest = list(events)
    assert rest[-1]["type"] == "done" and rest[-1]["state"] == "stopped"
    assert app.http.get("/api/conversations").json()["conversations"] == []


def test_answers_interrupted_by_a_restart_are_marked_stopped(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    inst = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    first = modelyard([inst])
    cid = create(first)["id"]
    # What a crash mid-answer leaves behind: an answer still marked as streaming.
    store = ConversationStore(first.services.db)
    store.write_turn(store.prepare_turn(cid, "Hi", lambda p, i, m: (p, i, m)).writes)
    first.stop()

    again = RunningApp(first.settings).start()
    try:
        messages = again.http.get(f"/api/conversations/{cid}").json()["messages"]
        assert [m["state"] for m in messages] == ["complete", "stopped"]
        assert "stopped" in messages[-1]["error"]
    finally:
        again.stop()


def test_conversation_changes_are_published(app: RunningApp) -> None:
    sub = app.services.bus.subscribe(["conversation.changed"])
    cid = create(app)["id"]
    send(app.http, cid, content="Hi")
    app.http.delete(f"/api/conversations/{cid}")

    got: list[str] = []

    def deleted_seen() -> bool:
        while (event := sub.get_nowait()) is not None:
            got.append(event.data["action"])
        return "deleted" in got

    wait_until(deleted_seen)
    assert got[0] == "created" and "message" in got
