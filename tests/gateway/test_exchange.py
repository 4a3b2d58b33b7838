"""What the gateway sends a backend: the client's request with the backend's model name, the
usage request, the pinned Ollama options — and nothing else changed."""

from __future__ import annotations

import json
from typing import Any

from modelyard.gateway.exchange import Target, upstream_request, wants_stream
from modelyard.gateway.translate.anthropic import AnthropicOverOpenAI
from modelyard.gateway.wire import Dialect

OPENAI = Target(
    key="k", base="http://h/v1", path="/chat/completions", model="backend", dialect=Dialect.OPENAI
)


def sent(target: Target[str], body: dict[str, Any], client: Dialect = Dialect.OPENAI) -> Any:
    return json.loads(upstream_request(target, body, client, None).body)


def test_a_stream_always_asks_for_usage_and_strips_it_only_when_not_asked() -> None:
    plain = upstream_request(OPENAI, {"model": "m", "stream": True}, Dialect.OPENAI, None)
    asked = upstream_request(
        OPENAI,
        {"model": "m", "stream": True, "stream_options": {"include_usage": True}},
        Dialect.OPENAI,
        None,
    )
    assert json.loads(plain.body)["stream_options"] == {"include_usage": True}
    assert plain.strip_usage and not asked.strip_usage
    assert plain.url == "http://h/v1/chat/completions"
    assert json.loads(plain.body)["model"] == "backend"


def test_a_whole_request_is_left_whole_unless_the_backend_cancels_only_streams() -> None:
    body = {"model": "m", "messages": []}
    assert "stream" not in sent(OPENAI, body)
    llama = Target(**{**OPENAI.__dict__, "cancels_only_streams": True})
    request = upstream_request(llama, body, Dialect.OPENAI, None)
    assert request.assemble and not request.stream and not request.strip_usage
    assert json.loads(request.body)["stream"] is True
    embeddings = Target(**{**llama.__dict__, "path": "/embeddings"})
    assert not upstream_request(embeddings, body, Dialect.OPENAI, None).assemble


def test_an_ollama_backend_gets_the_pinned_context_and_keep_alive() -> None:
    ollama = Target(
        key="k",
        base="http://h",
        path="/api/chat",
        model="llama3.2:latest",
        dialect=Dialect.OLLAMA,
        pinned_options={"num_ctx": 8192},
        keep_alive="35m",
    )
    body = {
        "model": "llama3.2",
        "messages": [],
        "options": {"num_ctx": 2048, "temperature": 0.5},
        "keep_alive": 0,
    }
    out = sent(ollama, body, Dialect.OLLAMA)
    assert out["options"] == {"num_ctx": 8192, "temperature": 0.5}
    assert out["keep_alive"] == "35m" and out["model"] == "llama3.2:latest"
    assert "stream_options" not in out  # Ollama's own API has no such thing


def test_a_translated_request_streams_when_the_client_asked() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [], "stream": True}
    request = upstream_request(OPENAI, body, Dialect.ANTHROPIC, AnthropicOverOpenAI())
    assert request.stream and request.strip_usage
    assert json.loads(request.body)["stream_options"] == {"include_usage": True}


def test_ollama_streams_unless_told_not_to() -> None:
    assert wants_stream(Dialect.OLLAMA, {}) and not wants_stream(Dialect.OLLAMA, {"stream": False})
    assert not wants_stream(Dialect.OPENAI, {}) and wants_stream(Dialect.OPENAI, {"stream": True})
