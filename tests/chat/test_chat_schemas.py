"""``/openapi.json`` documents the shapes the conversations routes really return: each answer,
taken from a real modelyard against the Ollama stand-in, has every key its schema requires and
no key it does not name (the messages, their usage and the stored options included)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.instance_config import InstanceConfig
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama_state import OllamaState
from tests.support.app_server import RunningApp
from tests.support.chat import send
from tests.support.openapi import Schemas, checked

ONE = "/api/conversations/{conversation_id}"


def test_conversation_answers_match_their_schemas(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    ollama_server.state.add_model("llama3.2")
    app = modelyard([InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)])
    http = app.http
    schemas = Schemas(http.get("/openapi.json").json())

    body = {"provider": "ollama", "model": "llama3.2", "options": {"temperature": 0.5}}
    created = checked(
        schemas, http.post("/api/conversations", json=body), "post", "/api/conversations", 201
    )
    assert created["options"] == {"temperature": 0.5} and "messages" not in created
    cid = created["id"]
    events = send(http, cid, content="Hello")
    assert [e["type"] for e in events][-1] == "done"
    failed = send(http, cid, content="Again", model="missing-model")  # an answer that failed
    assert failed[-1]["type"] == "error"
    # Each line of an answer's stream, as the route's text/event-stream schema declares it.
    stream = schemas.of("post", f"{ONE}/messages", 200, "text/event-stream")
    assert {"start", "token", "done", "error"} <= {e["type"] for e in events + failed}
    for event in events + failed:
        schemas.check(stream, event, f"event {event['type']}")
    with pytest.raises(AssertionError):  # a token is not read as a status
        schemas.check(schemas.resolve(stream)["anyOf"][1], {"type": "token", "text": "x"})

    listed = checked(schemas, http.get("/api/conversations"), "get", "/api/conversations")
    assert [c["message_count"] for c in listed["conversations"]] == [4]
    found = checked(schemas, http.get(f"/api/conversations/{cid}"), "get", ONE)
    assert [m["state"] for m in found["messages"]] == ["complete", "complete", "complete", "error"]
    assert found["generating"] is False
    patch = {"title": "Renamed", "options": {"max_tokens": 8}}
    patched = checked(schemas, http.patch(f"/api/conversations/{cid}", json=patch), "patch", ONE)
    assert (patched["title"], patched["options"]) == ("Renamed", {"max_tokens": 8})
    stopped = checked(schemas, http.post(f"/api/conversations/{cid}/stop"), "post", f"{ONE}/stop")
    assert stopped == {"stopped": False, "message_id": None}
