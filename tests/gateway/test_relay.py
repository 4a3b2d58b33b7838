"""The relay between real clients and real servers: the official openai SDK and raw HTTP in
front, a genuine llama-server and the paced stand-in behind."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import openai
import pytest

from modelyard.gateway.wire import Usage
from tests.fakes.fixtures import FakeServer
from tests.fakes.openai_compat import OpenAIState
from tests.support.gateway_app import llama_target, openai_target, running_gateway
from tests.support.paced_upstream import PacedThread
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Say something."}]


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_a_stream_carries_usage_only_when_the_client_asks(llama_url: str) -> None:
    with running_gateway({"tiny": openai_target("tiny", llama_url)}) as (server, app):
        client = sdk(server.url)
        plain = list(
            client.chat.completions.create(
                model="tiny", messages=MESSAGES, max_tokens=8, stream=True
            )
        )
        asked = list(
            client.chat.completions.create(
                model="tiny",
                messages=MESSAGES,
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert all(chunk.usage is None for chunk in plain)
    assert all(chunk.choices for chunk in plain)  # no empty usage chunk slipped through
    assert "".join(c.choices[0].delta.content or "" for c in plain)
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 8
    # The gateway knows the backend's own figures either way.
    assert [e.relay.usage for e in app.exchanges] == [
        Usage(asked[-1].usage.prompt_tokens, 8, exact=True)
    ] * 2
    assert all(e.relay.finished and e.status == 200 for e in app.exchanges)


@pytest.mark.parametrize("assembled", [False, True], ids=["relayed", "assembled"])
def test_a_whole_answer_and_its_usage(llama_url: str, assembled: bool) -> None:
    target = openai_target("tiny", llama_url, cancels_only_streams=assembled)
    with running_gateway({"tiny": target}) as (server, app):
        answer = sdk(server.url).chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=5
        )
    assert answer.object == "chat.completion" and answer.model  # as llama-server names it
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    assert app.exchanges[0].relay.usage == Usage(answer.usage.prompt_tokens, 5, exact=True)


def test_an_assembled_answer_joins_tool_call_fragments(
    tool_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = tool_server
    target = openai_target("t", url, model="tool-model", cancels_only_streams=True)
    with running_gateway({"t": target}, health_path="/v1/models") as (server, _):
        answer = sdk(server.url).chat.completions.create(model="t", messages=MESSAGES)
    assert received[0]["stream"] is True  # asked as a stream, answered whole
    message = answer.choices[0].message
    assert message.content == "Let me check."
    assert message.tool_calls is not None and message.tool_calls[0].id == "call_1"
    assert message.tool_calls[0].function.arguments == '{"city": "Paris"}'
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.usage is not None and answer.usage.completion_tokens == 12


def test_streams_are_sent_as_they_come_and_marked_unbuffered(paced: PacedThread) -> None:
    body = {"model": "paced", "messages": MESSAGES, "stream": True, "max_tokens": 30}
    targets = {"paced": openai_target("paced", paced.url)}
    with (
        running_gateway(targets, health_path="/stats") as (server, _),
        httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response,
    ):
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()  # kept: dropping the iterator would close the response
        first = next(lines)
        # The first token reached us while the stand-in still had tokens to send.
        assert first.startswith("data: ") and paced.upstream.stats.served == 0


def test_every_other_field_reaches_the_backend_untouched(
    openai_server: FakeServer[OpenAIState],
) -> None:
    body: dict[str, Any] = {
        "model": "gpt-x",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                ],
            }
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "auto",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        "temperature": 0.25,
        "logit_bias": {"50256": -100},
        "seed": 7,
        "x_vendor_extension": {"nested": [1, 2.5, None, True]},
        "stream": True,
        "stream_options": {"include_usage": False, "other": 1},
    }
    target = openai_target("gpt-x", openai_server.url, model="backend-name")
    with running_gateway({"gpt-x": target}, health_path="/v1/models") as (server, _):
        httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30).read()
    sent = openai_server.log.for_path("/v1/chat/completions")[0].json()
    expected = {**body, "model": "backend-name"}
    expected["stream_options"] = {"include_usage": True, "other": 1}
    assert sent == expected


def _open_stream(url: str, body: dict[str, Any]) -> socket.socket:
    """A raw HTTP/1.1 request whose connection the test can drop at will."""
    data = json.dumps(body).encode()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
    )
    return sock


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "whole"])
def test_a_client_that_hangs_up_closes_the_upstream_request(
    paced: PacedThread, stream: bool
) -> None:
    body = {"model": "paced", "messages": MESSAGES, "stream": stream, "max_tokens": 500}
    targets = {"paced": openai_target("paced", paced.url)}
    with running_gateway(targets, health_path="/stats") as (server, app):
        sock = _open_stream(server.url, {**body, "user": "leaver"})
        wait_until(lambda: paced.upstream.stats.started, "the backend to start answering")
        if stream:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
        wait_until(lambda: paced.upstream.stats.closed_early, "the upstream request to close")
        wait_until(lambda: app.exchanges, "the exchange to end")
    assert paced.upstream.stats.closed_early[0]["user"] == "leaver"
    record = app.exchanges[0]
    assert record.client_gone and record.status == (200 if stream else None)
    if stream:  # counted from the chunks relayed; a whole answer cut off has no count
        assert record.relay.usage is not None and not record.relay.usage.exact
    else:
        assert record.relay.usage is None


def _busy_slots(llama_url: str) -> int:
    slots = httpx.get(llama_url + "/slots", timeout=5).json()
    return sum(bool(slot["is_processing"]) for slot in slots)


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "whole"])
def test_llama_cpp_stops_generating_within_a_second_of_the_client_leaving(
    llama_url: str, stream: bool
) -> None:
    # 2000 tokens keep a slot busy for seconds; a hang-up must free it within one. (This
    # server runs a non-streamed answer to its end whatever the client does, so the gateway
    # asks it for a stream and assembles the whole answer itself.)
    body = {"model": "tiny", "messages": MESSAGES, "stream": stream, "max_tokens": 2000}
    with running_gateway({"tiny": llama_target("tiny", llama_url)}) as (server, _):
        sock = _open_stream(server.url, body)
        wait_until(lambda: _busy_slots(llama_url) == 1, "llama-server to start generating")
        if stream:  # hang up once tokens flow
            received = b""
            while b'"content":"' not in received:
                received += sock.recv(4096)
            assert received.startswith(b"HTTP/1.1 200")
        sock.close()
        left = time.monotonic()
        while _busy_slots(llama_url) and time.monotonic() - left < 1.0:
            time.sleep(0.02)
        assert _busy_slots(llama_url) == 0


def test_an_upstream_refusal_reaches_the_client_with_its_status_and_message(
    llama_url: str,
) -> None:
    too_long = [{"role": "user", "content": "word " * 3000}]  # beyond the 2048-token context
    with running_gateway({"tiny": openai_target("tiny", llama_url)}) as (server, _):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk(server.url).chat.completions.create(model="tiny", messages=too_long)
        raw = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "tiny", "messages": too_long},
            timeout=30,
        )
    assert refused.value.status_code == 400
    assert raw.headers["content-type"] == "application/problem+json"
    assert raw.json()["code"] == "upstream_rejected"
    assert "context" in raw.json()["error"]["message"]


def test_an_unknown_model_is_a_404_in_the_openai_shape(llama_url: str) -> None:
    with (
        running_gateway({"tiny": openai_target("tiny", llama_url)}) as (server, _),
        pytest.raises(openai.NotFoundError) as missing,
    ):
        sdk(server.url).chat.completions.create(model="nope", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
