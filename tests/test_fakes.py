"""The LM Studio, OpenAI-compatible, Anthropic and plain-HTTP stand-ins, checked with the
official SDKs and raw HTTP (the Ollama stand-in is covered in test_fakes_ollama.py)."""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from tests.fakes.anthropic import AnthropicState
from tests.fakes.fixtures import FakeServer
from tests.fakes.lmstudio import LMStudioState
from tests.fakes.openai_compat import MISSING_KEY, OpenAIState, ReplyScript
from tests.fakes.plain_http import PlainHttpState


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking the blank-line framing."""
    events = text.split("\n\n")
    assert events[-1] == ""
    return [e.removeprefix("data: ") for e in events[:-1]]


# ----- LM Studio ------------------------------------------------------------------------


def test_lmstudio_identity_and_unknown_endpoints(
    lmstudio_server: FakeServer[LMStudioState],
) -> None:
    url = lmstudio_server.url
    greeting = httpx.get(url + "/lmstudio-greeting")
    assert greeting.json() == {"lmstudio": True}
    assert greeting.headers["x-powered-by"] == "Express"
    for method, path in [("GET", "/api/tags"), ("GET", "/"), ("GET", "/v1/chat/completions")]:
        answer = httpx.request(method, url + path)
        assert answer.status_code == 200
        assert answer.text == f'{{"error":"Unexpected endpoint or method. ({method} {path})"}}'
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        assert answer.headers["x-powered-by"] == "Express"


def test_lmstudio_model_listings(lmstudio_server: FakeServer[LMStudioState]) -> None:
    url, state = lmstudio_server.url, lmstudio_server.state
    state.add_model("qwen/qwen3-4b", params_string="4B", loaded=True, trained_for_tool_use=True)
    state.add_model("qwen2-vl-7b", type="vlm", compatibility_type="mlx", quantization="4bit")
    state.add_model("text-embedding-nomic", type="embeddings", params_string=None)
    openai_list = httpx.get(url + "/v1/models")
    assert openai_list.text.startswith('{\n  "data": [\n')
    assert [m["id"] for m in openai_list.json()["data"]] == [
        "qwen/qwen3-4b",
        "qwen2-vl-7b",
        "text-embedding-nomic",
    ]
    assert openai_list.json()["data"][0]["owned_by"] == "organization_owner"
    state.jit_loading = False  # only loaded models are listed then
    assert [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]] == ["qwen/qwen3-4b"]

    v0 = httpx.get(url + "/api/v0/models").json()["data"]
    assert [(m["type"], m["state"]) for m in v0] == [
        ("llm", "loaded"),
        ("vlm", "not-loaded"),
        ("embeddings", "not-loaded"),
    ]
    one = httpx.get(url + "/api/v0/models/qwen/qwen3-4b").json()
    assert one["compatibility_type"] == "gguf" and one["quantization"] == "Q4_K_M"
    assert one["max_context_length"] == 32768 and one["capabilities"] == ["tool_use"]
    v1 = httpx.get(url + "/api/v1/models").json()["models"]
    assert [m["type"] for m in v1] == ["llm", "llm", "embedding"]
    assert v1[0]["loaded_instances"] == [
        {"id": "qwen/qwen3-4b", "config": {"context_length": 4096}}
    ]
    assert v1[1]["capabilities"]["vision"] is True and "architecture" not in v1[2]


def test_lmstudio_load_unload_and_streaming_chat(
    lmstudio_server: FakeServer[LMStudioState],
) -> None:
    url, state = lmstudio_server.url, lmstudio_server.state
    state.add_model("gemma-3-1b")
    state.reply = ReplyScript(pieces=["Hel", "lo"])
    first = httpx.post(
        url + "/api/v1/models/load", json={"model": "gemma-3-1b", "context_length": 8192}
    )
    assert first.json() == {
        "type": "llm",
        "instance_id": "gemma-3-1b",
        "load_time_seconds": 0.412,
        "status": "loaded",
    }
    second = httpx.post(url + "/api/v1/models/load", json={"model": "gemma-3-1b"}).json()
    assert second["instance_id"] == "gemma-3-1b:2"
    assert state.loaded_ids() == ["gemma-3-1b", "gemma-3-1b:2"]
    gone = httpx.post(url + "/api/v1/models/unload", json={"instance_id": "gemma-3-1b:2"})
    assert gone.json() == {"instance_id": "gemma-3-1b:2"}

    client = openai.OpenAI(base_url=url + "/v1", api_key="lm-studio")
    stream = client.chat.completions.create(
        model="gemma-3-1b", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "Hello"
    raw = httpx.post(
        url + "/v1/chat/completions",
        json={"model": "gemma-3-1b", "messages": [], "stream": True},
    )
    assert raw.headers["content-type"] == "text/event-stream"
    assert sse_data(raw.text)[-1] == "[DONE]"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert 'Model "nope" not found' in str(missing.value)


def test_lmstudio_api_token(lmstudio_server: FakeServer[LMStudioState]) -> None:
    url, state = lmstudio_server.url, lmstudio_server.state
    state.api_token = "sk-lm-secret"
    state.add_model("gemma-3-1b")
    assert httpx.get(url + "/lmstudio-greeting").status_code == 200  # discovery stays open
    missing = httpx.get(url + "/api/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert "none was provided" in missing.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong").models.list()
    models = openai.OpenAI(base_url=url + "/v1", api_key="sk-lm-secret").models.list()
    assert [m.id for m in models] == ["gemma-3-1b"]


# ----- generic OpenAI-compatible ---------------------------------------------------------


def test_openai_streaming_with_usage_and_plain_completion(
    openai_server: FakeServer[OpenAIState],
) -> None:
    state = openai_server.state
    state.models = ["gpt-4o-mini"]
    state.reply = ReplyScript(pieces=["One", " two", " three"])
    client = openai.OpenAI(base_url=openai_server.url + "/v1", api_key="anything")
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    whole = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], max_tokens=2
    )
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (
        "One two",
        "length",
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
    raw = httpx.post(
        openai_server.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [], "stream": True},
    )
    assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"
    payloads = sse_data(raw.text)
    assert payloads[-1] == "[DONE]" and json.loads(payloads[0])["object"] == "chat.completion.chunk"


def test_openai_api_key_errors(openai_server: FakeServer[OpenAIState]) -> None:
    url, state = openai_server.url, openai_server.state
    state.api_key = "sk-right-key-123456"
    missing = httpx.get(url + "/v1/models")
    assert missing.status_code == 401
    assert missing.json() == {
        "error": {
            "message": MISSING_KEY,
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    with pytest.raises(openai.AuthenticationError) as wrong:
        openai.OpenAI(base_url=url + "/v1", api_key="sk-abcdefwrongwxyz").models.list()
    assert wrong.value.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-*" in wrong.value.message
    assert (
        openai.OpenAI(base_url=url + "/v1", api_key="sk-right-key-123456").models.list().data == []
    )


def test_openai_mid_stream_error_and_client_stop(openai_server: FakeServer[OpenAIState]) -> None:
    state = openai_server.state
    client = openai.OpenAI(base_url=openai_server.url + "/v1", api_key="x")
    state.reply = ReplyScript(pieces=["a", "b", "c"], error_after=1, error_message="out of memory")
    received: list[str] = []
    with pytest.raises(openai.APIError, match="out of memory"):
        for chunk in client.chat.completions.create(model="m", messages=[], stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "a"]

    state.reply = ReplyScript(pieces=["tok"] * 300, token_delay=0.02)
    stream = client.chat.completions.create(model="m", messages=[], stream=True)
    chunks = iter(stream)
    next(chunks), next(chunks)
    stream.close()  # what a "stop" button does
    record = state.log.for_path("/v1/chat/completions")[-1]
    assert record.wait_finished() and record.disconnected
    assert record.chunks_sent < 300


# ----- Anthropic --------------------------------------------------------------------------


def test_anthropic_models_and_authentication(anthropic_server: FakeServer[AnthropicState]) -> None:
    url, state = anthropic_server.url, anthropic_server.state
    client = anthropic.Anthropic(base_url=url, api_key=state.api_key)
    page = client.models.list(limit=2)
    assert [m.id for m in page.data] == ["claude-opus-4-7", "claude-sonnet-4-6"]
    assert page.has_more and page.last_id == "claude-sonnet-4-6"
    every = [m.id for m in client.models.list(limit=1)]  # the SDK follows after_id pages
    assert every == [m.id for m in state.models]
    with pytest.raises(anthropic.AuthenticationError) as bad:
        anthropic.Anthropic(base_url=url, api_key="wrong").models.list()
    assert bad.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": bad.value.body["request_id"],  # type: ignore[index]
    }
    no_version = httpx.get(url + "/v1/models", headers={"x-api-key": state.api_key})
    assert no_version.status_code == 400
    assert no_version.json()["error"]["type"] == "invalid_request_error"
    no_key = httpx.get(url + "/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert no_key.json()["error"]["message"] == "x-api-key header is required"


def test_anthropic_streaming_messages(anthropic_server: FakeServer[AnthropicState]) -> None:
    url, state = anthropic_server.url, anthropic_server.state
    state.reply = ReplyScript(pieces=["Hello", " world"])
    client = anthropic.Anthropic(base_url=url, api_key=state.api_key)
    request: dict[str, object] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    with client.messages.stream(**request) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello world"
    assert (final.stop_reason, final.usage.output_tokens, final.usage.input_tokens) == (
        "end_turn", 2, 2,
    )  # fmt: skip
    short = client.messages.create(**{**request, "max_tokens": 1})  # type: ignore[call-overload]
    assert (short.content[0].text, short.stop_reason) == ("Hello", "max_tokens")
    raw = httpx.post(
        url + "/v1/messages",
        json={**request, "stream": True},
        headers={"x-api-key": state.api_key, "anthropic-version": "2023-06-01"},
    )
    assert raw.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = [block.split("\n")[0] for block in raw.text.split("\n\n") if block]
    assert events == [
        "event: message_start",
        "event: content_block_start",
        "event: ping",
        "event: content_block_delta",
        "event: content_block_delta",
        "event: content_block_stop",
        "event: message_delta",
        "event: message_stop",
    ]


def test_anthropic_mid_stream_error(anthropic_server: FakeServer[AnthropicState]) -> None:
    state = anthropic_server.state
    state.reply = ReplyScript(pieces=["a", "b"], error_after=1, error_message="Overloaded")
    client = anthropic.Anthropic(base_url=anthropic_server.url, api_key=state.api_key)
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        client.messages.stream(
            model="claude-haiku-4-5-20251001",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        ) as stream,
    ):
        seen.extend(stream.text_stream)
    assert seen == ["a"]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="claude-0", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


# ----- an unrelated web server ------------------------------------------------------------


def test_plain_http_server(plain_http_server: FakeServer[PlainHttpState]) -> None:
    url = plain_http_server.url
    home = httpx.get(url + "/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert "<h1>Team wiki</h1>" in home.text
    for path in ("/api/version", "/v1/models", "/lmstudio-greeting", "/health"):
        missing = httpx.get(url + path)
        assert missing.status_code == 404 and "404 Not Found" in missing.text
    assert httpx.post(url + "/").status_code == 404
    assert plain_http_server.log.paths()[:2] == ["/", "/api/version"]
