"""Every gateway request is logged, refusals too (issue #20 §5): a request refused by the
guards (no key, a bad one, a scope) or before its turn (its body, an unknown model or one its
key may not use, its key's limits) is one entry of the request log — the ``gateway.request``
event the Gateway page's live log reads from ``/ws/events``, the log line, Prometheus' count
by status — with its status and code, the model as asked, the key's prefix, never the prompt
nor the whole key; and an error in a keyed caller's usage. A flood of them grows nothing."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.gateway_routes.conftest import Stack
from tests.gateway_routes.test_keys import claude, gpt, llama, make_key
from tests.support.catalog import drain

SECRET = "a prompt nobody may read"
HI = [{"role": "user", "content": SECRET}]
BAD_KEY = "my_" + "x" * 40
FLOOD = 1000  # requests of each kind in the flood


def _entries(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = json.loads(ws.recv(timeout=30))
        assert message["type"] == "gateway.request", message
        found.append(message["data"])
    return found


@pytest.fixture
def requests_log(stack: Stack) -> Iterator[ClientConnection]:
    """What the Gateway page reads for its live log: ``/ws/events``, ``gateway.request``."""
    url = stack.app.url.replace("http", "ws", 1) + "/ws/events"
    with connect(url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        ws.send(json.dumps({"subscribe": ["gateway.request"]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        yield ws


def _counted(metrics: str, model: str, status: int) -> float:
    series = f'modelyard_gateway_requests_total{{model="{model}",status="{status}"}}'
    line = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.MULTILINE)
    return float(line.group(1)) if line else 0.0


def _usage(stack: Stack, key: dict[str, Any]) -> dict[str, Any]:
    answer = stack.app.http.get("/api/usage", params={"key": key["id"], "group": "key"})
    assert answer.status_code == 200, answer.text
    totals: dict[str, Any] = answer.json()["totals"]
    return totals


def test_refusals_reach_the_log_the_events_the_metrics_and_the_usage(
    stack: Stack, requests_log: ClientConnection, caplog: pytest.LogCaptureFixture
) -> None:
    before = stack.app.http.get("/metrics").text
    only_small = make_key(stack, models=["small"])
    one_a_minute = make_key(stack, limits={"requests_per_minute": 1})
    reader = make_key(stack, scopes=["read"])
    with caplog.at_level(logging.INFO, logger="modelyard.gateway.requests"):
        with pytest.raises(openai.AuthenticationError):  # 401: a key of modelyard's form, bad
            gpt(stack, BAD_KEY).chat.completions.create(model="small", messages=HI)  # type: ignore[arg-type]
        with pytest.raises(anthropic.PermissionDeniedError):  # 403: no inference scope
            claude(stack, reader["key"]).messages.create(model="small", max_tokens=1, messages=HI)  # type: ignore[list-item]
        with pytest.raises(ollama.ResponseError) as outside:  # 404: outside the allow-list
            llama(stack, only_small["key"]).chat(model="llama3.2", messages=HI, stream=False)
        assert outside.value.status_code == 404
        with pytest.raises(openai.NotFoundError):  # 404: no such model
            gpt(stack, only_small["key"]).chat.completions.create(model="nope", messages=HI)  # type: ignore[arg-type]
        gpt(stack, one_a_minute["key"]).chat.completions.create(
            model="tiny.gguf",
            messages=HI,  # type: ignore[arg-type]
            max_tokens=1,
        )
        with pytest.raises(openai.RateLimitError):  # 429: over the key's requests per minute
            gpt(stack, one_a_minute["key"]).chat.completions.create(
                model="tiny.gguf",
                messages=HI,  # type: ignore[arg-type]
                max_tokens=1,
            )
        not_json = stack.app.http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"Authorization": f"Bearer {only_small['key']}"},
        )
        assert not_json.status_code == 400
        entries = _entries(requests_log, 7)

    seen = [(e["status"], e["code"], e["model"], e["key"], e["key_prefix"]) for e in entries]
    assert seen == [
        (401, "unauthorized", "", "", BAD_KEY[:8]),  # the guards refuse before the body
        (403, "insufficient_scope", "", "", reader["prefix"]),
        (404, "model_not_found", "llama3.2", "", only_small["prefix"]),
        (404, "model_not_found", "nope", "", only_small["prefix"]),
        (200, None, "tiny.gguf", "llamacpp/local/tiny.gguf", one_a_minute["prefix"]),
        (429, "rate_limited_requests", "tiny.gguf", "llamacpp/local/tiny.gguf",
         one_a_minute["prefix"]),
        (400, "invalid_json", "", "", only_small["prefix"]),
    ]  # fmt: skip
    assert all(e["route"] for e in entries) and entries[1]["route"] == "/v1/messages"
    assert entries[2]["route"] == "/ollama/api/chat"
    assert entries[0]["caller"] == "anonymous" and entries[2]["caller"] == "test"
    text = json.dumps(entries) + caplog.text
    assert SECRET not in text and BAD_KEY not in text and only_small["key"] not in text

    lines = [r.getMessage() for r in caplog.records if r.name == "modelyard.gateway.requests"]
    assert len(lines) == 7
    assert "status=401 code=unauthorized" in lines[0] and f"key_prefix={BAD_KEY[:8]}" in lines[0]
    assert "model=nope" in lines[3] and "code=model_not_found" in lines[3]

    after = stack.app.http.get("/metrics").text
    for model, status, more in (
        ("", 401, 1),
        ("", 403, 1),
        ("", 404, 2),
        ("", 400, 1),
        ("llamacpp/local/tiny.gguf", 429, 1),
    ):
        assert _counted(after, model, status) - _counted(before, model, status) == more

    listed = _usage(stack, only_small)
    assert (listed["requests"], listed["errors"]) == (3, 3)
    limited = _usage(stack, one_a_minute)
    assert (limited["requests"], limited["errors"], limited["completion_tokens"]) == (2, 1, 1)
    assert (_usage(stack, reader)["requests"], _usage(stack, reader)["errors"]) == (1, 1)


def test_an_expired_key_is_logged_and_counted_as_its_own(
    stack: Stack, requests_log: ClientConnection
) -> None:
    expires = time.time() + 1.5
    key = make_key(stack, expires_at=datetime.fromtimestamp(expires, UTC).isoformat())
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    with pytest.raises(openai.AuthenticationError):
        gpt(stack, key["key"]).chat.completions.create(model="small", messages=HI)  # type: ignore[arg-type]
    (entry,) = _entries(requests_log, 1)
    assert (entry["status"], entry["code"], entry["key_prefix"]) == (
        401,
        "api_key_expired",
        key["prefix"],
    )
    assert _usage(stack, key)["errors"] == 1


def test_a_flood_of_refusals_grows_nothing(stack: Stack) -> None:
    """Bad keys, each different, and made-up model names, each different, from a key: one
    series per status, one usage row, and a reader that does not keep up is cut off (and
    reconnects to a snapshot) rather than queueing without end."""
    app = stack.app
    key = make_key(stack)
    idle = app.services.bus.subscribe(["gateway.request"])
    deadline = time.monotonic() + 300
    sent = 0
    try:
        with httpx.Client(base_url=app.url, timeout=30) as http:
            for i in range(FLOOD):
                assert time.monotonic() < deadline
                bad = http.post(
                    "/v1/chat/completions",
                    json={"model": "small", "messages": HI},
                    headers={"Authorization": f"Bearer my_{i:040d}"},
                )
                assert bad.status_code == 401
                unknown = http.post(
                    "/v1/chat/completions",
                    json={"model": f"made-up-{i}-" + "m" * 300, "messages": HI},
                    headers={"Authorization": f"Bearer {key['key']}"},
                )
                assert unknown.status_code == 404
                sent += 2
        assert sent == 2 * FLOOD
        assert idle.overflowed  # the bus's bound: a subscriber holds at most queue_size
        assert 0 < len(drain(idle)) <= app.services.bus.queue_size
    finally:
        app.services.bus.unsubscribe(idle)
    metrics = app.http.get("/metrics").text
    series = re.findall(r"^modelyard_gateway_requests_total\{(.*)\}", metrics, re.MULTILINE)
    assert not any("made-up" in s or "my_0" in s for s in series)
    rows = app.http.get("/api/usage", params={"key": key["id"], "group": "model"}).json()
    assert [(r["model"], r["requests"], r["errors"]) for r in rows["usage"]] == [("", FLOOD, FLOOD)]
