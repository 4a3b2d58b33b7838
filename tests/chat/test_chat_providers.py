"""Chat with every kind of provider through the API, against the stand-ins: streams, usage,
options on the wire, and every failure mapped to a reason code the client can act on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from modelyard.instance_config import InstanceConfig
from modelyard.providers.clients import Clients
from tests.fakes.common import ReplyScript
from tests.support.app_server import RunningApp
from tests.support.chat import send, text_of
from tests.support.servers import closed_port
from tests.support.waiting import wait_until

PIECES = ["Hello", ",", " world", "!"]


def chat_with(app: RunningApp, provider: str, model: str, **extra: Any) -> str:
    resp = app.http.post("/api/conversations", json={"provider": provider, "model": model, **extra})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def last_message(app: RunningApp, cid: str) -> dict[str, Any]:
    return dict(app.http.get(f"/api/conversations/{cid}").json()["messages"][-1])


def ollama(url: str) -> InstanceConfig:
    return InstanceConfig(provider="ollama", id="default", base_url=url)


def test_ollama_streams_ndjson_with_options_and_usage(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.reply = ReplyScript(pieces=PIECES)
    app = modelyard([ollama(ollama_server.url)])
    cid = chat_with(app, "ollama", "llama3.2", system="Answer briefly.")
    options = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "ctx_size": 2048}
    events = send(app.http, cid, content="Hi there", options=options)

    assert [e["text"] for e in events if e["type"] == "token"] == PIECES
    done = events[-1]
    assert done["type"] == "done" and done["state"] == "complete"
    assert done["usage"]["completion_tokens"] == len(PIECES)
    assert done["usage"]["prompt_tokens"] == 4  # the stand-in counts words
    assert done["finish_reason"] == "stop"
    sent = ollama_server.log.for_path("/api/chat")[-1].json()
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hi there"},
    ]
    assert sent["options"] == {"temperature": 0.2, "top_p": 0.9, "num_predict": 50, "num_ctx": 2048}
    assert sent["stream"] is True
    assert last_message(app, cid)["content"] == "Hello, world!"


def test_ollama_says_it_is_loading_a_model_that_is_not_loaded(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.reply = ReplyScript(pieces=PIECES, token_delay=0.2)
    app = modelyard([ollama(ollama_server.url)])
    cid = chat_with(app, "ollama", "llama3.2")
    first = send(app.http, cid, content="Hi")
    assert [e["type"] for e in first[:3]] == ["start", "status", "token"]
    assert first[1]["text"] == "Loading llama3.2…"
    again = send(app.http, cid, content="Hi again")  # now /api/ps lists it
    assert "status" not in [e["type"] for e in again]


def test_ollama_mid_stream_error_keeps_the_partial_answer(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    ollama_server.state.add_model("llama3.2")
    ollama_server.state.reply = ReplyScript(pieces=PIECES, error_after=2)
    app = modelyard([ollama(ollama_server.url)])
    cid = chat_with(app, "ollama", "llama3.2")
    events = send(app.http, cid, content="Hi")
    assert text_of(events) == "Hello,"
    error = events[-1]
    assert error["type"] == "error" and error["code"] == "upstream_error"
    assert error["detail"] == "model runner has unexpectedly stopped"
    stored = last_message(app, cid)
    assert (stored["state"], stored["content"]) == ("error", "Hello,")
    assert stored["error"] == "model runner has unexpectedly stopped"


def test_ollama_unknown_model_is_model_not_found(
    modelyard: Callable[..., RunningApp], ollama_server: Any
) -> None:
    app = modelyard([ollama(ollama_server.url)])
    cid = chat_with(app, "ollama", "ghost:7b")
    events = send(app.http, cid, content="Hi")
    assert [e["type"] for e in events] == ["start", "error"]
    assert events[-1]["code"] == "model_not_found"
    assert "ghost:7b" in events[-1]["detail"] and events[-1]["hint"]
    assert last_message(app, cid)["state"] == "error"


def test_anthropic_messages_stream(
    modelyard: Callable[..., RunningApp], anthropic_server: Any
) -> None:
    anthropic_server.state.reply = ReplyScript(pieces=PIECES)
    inst = InstanceConfig(
        provider="anthropic",
        id="default",
        base_url=anthropic_server.url,
        api_key=anthropic_server.state.api_key,
    )
    app = modelyard([inst])
    cid = chat_with(app, "anthropic", "claude-sonnet-4-6", system="Be terse.")
    events = send(app.http, cid, content="Say hi", options={"max_tokens": 100})
    assert text_of(events) == "Hello, world!"
    done = events[-1]
    assert done["type"] == "done" and done["finish_reason"] == "end_turn"
    assert done["usage"] == {"prompt_tokens": 2, "completion_tokens": len(PIECES)}
    sent = anthropic_server.log.for_path("/v1/messages")[-1].json()
    assert sent["system"] == "Be terse." and sent["max_tokens"] == 100
    assert sent["messages"] == [{"role": "user", "content": "Say hi"}]


def test_anthropic_mid_stream_error_and_missing_key(
    modelyard: Callable[..., RunningApp], anthropic_server: Any
) -> None:
    anthropic_server.state.reply = ReplyScript(pieces=PIECES, error_after=1)
    keyed = InstanceConfig(
        provider="anthropic",
        id="default",
        base_url=anthropic_server.url,
        api_key=anthropic_server.state.api_key,
    )
    keyless = InstanceConfig(provider="anthropic", id="nokey", base_url=anthropic_server.url)
    app = modelyard([keyed, keyless])
    failing = send(app.http, chat_with(app, "anthropic", "claude-sonnet-4-6"), content="Hi")
    assert text_of(failing) == "Hello"
    assert failing[-1]["type"] == "error" and failing[-1]["code"] == "upstream_error"

    cid = chat_with(app, "anthropic", "claude-sonnet-4-6", instance_id="nokey")
    missing = send(app.http, cid, content="Hi")
    assert missing[-1]["type"] == "error" and missing[-1]["code"] == "missing_api_key"
    assert "ANTHROPIC_API_KEY" in missing[-1]["hint"]
    assert len(anthropic_server.log.for_path("/v1/messages")) == 1  # nothing sent without a key


def test_openai_compatible_401_is_unauthorized(
    modelyard: Callable[..., RunningApp], openai_server: Any
) -> None:
    openai_server.state.api_key = "sk-right"
    inst = InstanceConfig(
        provider="openai_compat",
        id="vllm",
        base_url=openai_server.url,
        api_key="sk-wrong",
    )
    app = modelyard([inst])
    cid = chat_with(app, "openai_compat", "qwen")
    events = send(app.http, cid, content="Hi")
    error = events[-1]
    assert error["type"] == "error" and error["code"] == "unauthorized"
    assert "Incorrect API key" in error["detail"] and error["hint"]
    assert last_message(app, cid)["state"] == "error"


def test_openai_compatible_and_lmstudio_stream_with_usage(
    modelyard: Callable[..., RunningApp], openai_server: Any, lmstudio_server: Any
) -> None:
    openai_server.state.reply = ReplyScript(pieces=PIECES)
    lmstudio_server.state.add_model("qwen/qwen3-4b")
    lmstudio_server.state.reply = ReplyScript(pieces=PIECES[:2])
    app = modelyard(
        [
            # Base URLs of OpenAI-compatible servers are often given with their /v1.
            InstanceConfig(provider="openai_compat", id="vllm", base_url=f"{openai_server.url}/v1"),
            InstanceConfig(provider="lmstudio", id="default", base_url=lmstudio_server.url),
        ]
    )
    events = send(
        app.http, chat_with(app, "openai_compat", "qwen"), content="Hi", options={"max_tokens": 3}
    )
    assert text_of(events) == "Hello, world", events
    assert events[-1]["usage"]["completion_tokens"] == 3
    assert events[-1]["finish_reason"] == "length"
    sent = openai_server.log.for_path("/v1/chat/completions")[-1].json()
    assert sent["max_tokens"] == 3 and sent["stream_options"] == {"include_usage": True}

    lm = send(app.http, chat_with(app, "lmstudio", "qwen/qwen3-4b"), content="Hi")
    assert text_of(lm) == "Hello," and lm[-1]["state"] == "complete"


def test_a_provider_that_is_down_gives_the_health_reason_code(
    modelyard: Callable[..., RunningApp],
) -> None:
    inst = InstanceConfig(
        provider="ollama", id="default", base_url=f"http://127.0.0.1:{closed_port()}"
    )
    app = modelyard([inst])
    cid = chat_with(app, "ollama", "llama3.2")
    events = send(app.http, cid, content="Hi")
    error = events[-1]
    assert error["type"] == "error" and error["code"] == "connection_refused"
    assert "ollama serve" in error["hint"]
    stored = last_message(app, cid)
    assert stored["state"] == "error" and stored["content"] == ""


def test_openai_style_endpoints_share_one_http_client_and_closing_closes_it() -> None:
    """A new endpoint (every GGUF model start makes one) must not build its own HTTP client
    and TLS context, tens of milliseconds, on the way to its first token."""

    async def scenario() -> None:
        clients = Clients(connect_timeout_s=1.0, read_timeout_s=5.0)
        first = clients.openai_client("http://127.0.0.1:1", "", retries=0)
        second = clients.openai_client("http://127.0.0.1:2/v1", "key", retries=2)
        assert first is not second and str(second.base_url) == "http://127.0.0.1:2/v1/"
        assert first._client is second._client
        await clients.aclose()
        assert first._client.is_closed

    asyncio.run(scenario())


def test_opening_the_chat_prepares_the_sdk_clients_before_the_first_answer(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard()
    clients = app.services.chat.clients
    assert not clients.warmed  # nothing is built at startup (it costs ~0.2 s)

    assert app.http.get("/api/conversations").status_code == 200  # the Chat page opens

    wait_until(lambda: clients.warmed, timeout=30)
