"""WebSocket edges (SPEC §7, §8): finished pulls close cleanly, binary frames are commands
like text frames, control replies are envelopes; and connection-info's OpenAI SDK snippet
points at a configured server."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from modelyard.events import DOWNLOAD_STATE, PROVIDER_STATUS
from modelyard.instance_config import InstanceConfig
from tests.downloads.support import wait_bytes, wait_state
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama_state import OllamaState
from tests.fakes.openai_compat import OpenAIState
from tests.support.app_server import RunningApp
from tests.support.waiting import wait_until

ENVELOPE = {"seq", "ts", "type", "data"}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """What the served app logs at ERROR (uvicorn's logger does not propagate to caplog)."""
    handler = _Collect()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def app(modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]) -> RunningApp:
    state = ollama_server.state
    state.pull_tick, state.pull_chunk_bytes = 0.01, 1_000_000  # slow:1b takes seconds
    state.add_registry_model("tiny:1b", [3_000_000, 1_400])
    state.add_registry_model("slow:1b", [400_000_000, 1_400])
    instance = InstanceConfig(provider="ollama", id="default", base_url=ollama_server.url)
    return modelyard([instance], monitor=False)


def _ws(app: RunningApp, path: str) -> ClientConnection:
    return connect(app.url.replace("http", "ws", 1) + path, open_timeout=10)


def _pull(app: RunningApp, model_name: str) -> str:
    resp = app.http.post("/api/models/pull", json={"model_name": model_name})
    assert resp.status_code == 200, resp.text
    pull_id: str = resp.json()["pull_id"]
    return pull_id


def _recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return message


def _close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent (None: no close frame)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=30)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


# 1. A finished pull's socket sends its status once, then a normal close.


@pytest.mark.parametrize(
    ("model_name", "end", "status"),
    [
        ("tiny:1b", "completed", "COMPLETED"),
        ("nowhere:1b", "failed", "FAILED"),
        ("slow:1b", "cancelled", "FAILED"),
    ],
)
def test_the_socket_of_a_finished_pull_sends_its_status_and_closes_with_1000(
    app: RunningApp,
    server_errors: list[logging.LogRecord],
    model_name: str,
    end: str,
    status: str,
) -> None:
    pull_id = _pull(app, model_name)
    if end == "cancelled":
        wait_bytes(app.http, pull_id, 1)
        assert app.http.post(f"/api/downloads/{pull_id}/cancel").status_code == 200
    assert wait_state(app.http, pull_id, {"completed", "failed", "cancelled"})["state"] == end

    with _ws(app, f"/ws/models/pull/{pull_id}") as ws:
        first = _recv(ws)
        assert first["pull_id"] == pull_id and first["status"] == status
        assert _close_code(ws) == 1000
    assert server_errors == []


# 2. Binary frames are read like text frames, never an exception.


def test_a_binary_frame_on_the_pull_socket_does_not_break_the_stream(
    app: RunningApp, ollama_server: FakeServer[OllamaState], server_errors: list[logging.LogRecord]
) -> None:
    ollama_server.state.pull_chunk_bytes = 4_000_000  # about a second
    pull_id = _pull(app, "slow:1b")
    messages: list[dict[str, Any]] = []
    with _ws(app, f"/ws/models/pull/{pull_id}") as ws:
        messages.append(_recv(ws))
        ws.send(b'{"hello": "binary"}')
        ws.send(b"\xff\xfe not utf-8")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                messages.append(_recv(ws))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert messages[-1]["status"] == "COMPLETED"
    assert server_errors == []


@contextlib.contextmanager
def _events(app: RunningApp) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    with _ws(app, "/ws/events") as ws:
        snapshot = _recv(ws)
        assert snapshot["type"] == "snapshot"
        yield ws, snapshot


def test_a_binary_frame_on_the_events_socket_is_read_as_a_command(
    app: RunningApp, server_errors: list[logging.LogRecord]
) -> None:
    with _events(app) as (ws, _):
        ws.send(json.dumps({"subscribe": ["download.*"]}).encode())
        reply = _recv(ws)
        assert reply["type"] == "subscribed" and reply["data"]["patterns"] == ["download.*"]

        ws.send(b"\xff\xfe not utf-8")
        assert _recv(ws)["data"]["code"] == "invalid_json"
        ws.send(b'["not", "a", "command"]')
        assert _recv(ws)["data"]["code"] == "invalid_command"

        # The subscription from the binary frame holds, and the socket is still alive.
        app.services.bus.publish(PROVIDER_STATUS, {"skip": True})
        app.services.bus.publish(DOWNLOAD_STATE, {"id": "b", "state": "queued"})
        event = _recv(ws)
        assert event["type"] == "download.state" and event["data"]["id"] == "b"
    wait_until(lambda: app.services.bus.subscriber_count == 0, "the client to be unsubscribed")
    assert server_errors == []


# 3. Control replies are envelopes too.


def test_control_replies_are_envelopes_that_keep_seq_in_order(app: RunningApp) -> None:
    with _events(app) as (ws, snapshot):
        ws.send(json.dumps({"subscribe": ["download.*"]}))
        subscribed = _recv(ws)
        assert set(subscribed) == ENVELOPE and subscribed["type"] == "subscribed"
        assert subscribed["ts"].endswith("Z") and subscribed["seq"] == snapshot["seq"]

        app.services.bus.publish(DOWNLOAD_STATE, {"id": "c", "state": "queued"})
        event = _recv(ws)
        assert event["type"] == "download.state" and event["seq"] > snapshot["seq"]

        replies = []
        for bad in ("not json", json.dumps({"subscribe": "download.*"})):
            ws.send(bad)
            replies.append(_recv(ws))
        assert [r["data"]["code"] for r in replies] == ["invalid_json", "invalid_command"]
        for reply in replies:
            assert set(reply) == ENVELOPE and reply["type"] == "error"
            assert reply["ts"].endswith("Z") and reply["data"]["hint"]
            # A reply takes the number of the last event sent before it: seq never goes back.
            assert reply["seq"] == event["seq"]


# 4. connection-info: the OpenAI SDK snippet talks to a configured server.


def _snippet(app: RunningApp) -> str:
    resp = app.http.get("/api/connection-info")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body["snippets"]) == {"curl", "python", "openai_sdk"}
    code: str = body["snippets"]["openai_sdk"]
    return code


def _run(code: str) -> str:
    """Run a snippet the way a user pasting it would; what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<openai_sdk snippet>", "exec"), {})
    return out.getvalue()


def test_the_openai_snippet_lists_the_models_of_the_configured_ollama(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    ollama_server.state.add_model("qwen2.5:0.5b")
    instance = InstanceConfig(provider="ollama", id="box", base_url=ollama_server.url)
    app = modelyard([instance], monitor=False)

    code = _snippet(app)

    assert f"{ollama_server.url}/v1" in code and "11434" not in code
    assert "qwen2.5:0.5b" in _run(code)


def test_the_openai_snippet_uses_an_openai_compatible_server_and_its_key_variable(
    modelyard: Callable[..., RunningApp],
    openai_server: FakeServer[OpenAIState],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    openai_server.state.api_key = "sk-snippet-1"
    openai_server.state.models = ["served-model"]
    monkeypatch.setenv("SNIPPET_TEST_KEY", "sk-snippet-1")
    cloud = InstanceConfig(provider="anthropic", id="default", base_url="https://api.anthropic.com")
    served = InstanceConfig(
        provider="openai_compat",
        id="vllm",
        base_url=openai_server.url + "/v1",
        api_key_env="SNIPPET_TEST_KEY",
    )
    app = modelyard([cloud, served], monitor=False)

    code = _snippet(app)

    assert f"{openai_server.url}/v1'" in code and "/v1/v1" not in code
    assert "sk-snippet-1" not in code  # a key is never shown, only where to read it
    assert "served-model" in _run(code)


def test_without_an_openai_compatible_server_the_snippet_says_how_to_add_one(
    modelyard: Callable[..., RunningApp],
) -> None:
    cloud = InstanceConfig(provider="anthropic", id="default", base_url="https://api.anthropic.com")
    app = modelyard([cloud], monitor=False)

    code = _snippet(app)

    assert "11434" not in code and "api.anthropic.com" not in code
    assert "POST /api/providers/{provider}/instances" in code
