"""Ollama's API over OpenAI backends: the official ollama SDK in front of the gateway's
``/ollama`` prefix, a genuine llama-server (chat, generate, embeddings) or a scripted OpenAI
server (tool calls) behind it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from modelyard.gateway.translate.ollama import (
    OllamaChatOverOpenAI,
    OllamaEmbedOverOpenAI,
    OllamaGenerateOverOpenAI,
    chat_request,
    generate_request,
)
from modelyard.gateway.translate.ollama_wire import created_at, go_json
from tests.support.gateway_app import openai_target, running_gateway
from tests.support.llama import llama_server
from tests.support.tiny_gguf import write_tiny_gguf

TRANSLATIONS = {
    "/ollama/api/chat": OllamaChatOverOpenAI,
    "/ollama/api/generate": OllamaGenerateOverOpenAI,
    "/ollama/api/embed": OllamaEmbedOverOpenAI,
}
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z$")


def sdk(url: str) -> ollama.Client:
    return ollama.Client(host=url + "/ollama", timeout=60)


def test_chat_streamed_and_whole_from_llama_cpp(llama_url: str) -> None:
    targets = {"tiny:latest": openai_target("tiny:latest", llama_url, model="tiny")}
    with running_gateway(targets, translations=TRANSLATIONS) as (server, app):
        client = sdk(server.url)
        messages = [{"role": "user", "content": "Hello"}]
        whole = client.chat("tiny:latest", messages=messages, options={"num_predict": 5})
        parts = list(
            client.chat("tiny:latest", messages=messages, stream=True, options={"num_predict": 6})
        )
        raw = httpx.post(
            server.url + "/ollama/api/chat",
            json={"model": "tiny:latest", "messages": messages, "options": {"num_predict": 3}},
            timeout=30,
        )
    assert whole.model == "tiny:latest" and whole.done and whole.done_reason == "length"
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.eval_count == 5 and (whole.prompt_eval_count or 0) > 0
    assert (whole.total_duration or 0) > 0
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert parts[-1].eval_count == 6 and parts[-1].done_reason == "length"
    assert "".join(p.message.content or "" for p in parts)
    lines = [json.loads(line) for line in raw.text.splitlines()]
    assert raw.headers["content-type"] == "application/x-ndjson"
    assert all(GO_TIME.match(line["created_at"]) for line in lines)
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 3
    assert "load_duration" not in lines[-1]  # zero metrics are left out, as Ollama does
    assert app.exchanges[1].relay.usage is not None
    assert app.exchanges[1].relay.usage.completion_tokens == 6


def test_generate_with_a_template_and_raw(llama_url: str) -> None:
    targets = {"tiny:latest": openai_target("tiny:latest", llama_url, model="tiny")}
    with running_gateway(targets, translations=TRANSLATIONS) as (server, _):
        client = sdk(server.url)
        whole = client.generate("tiny:latest", "Once upon", options={"num_predict": 4})
        raw = list(
            client.generate(
                "tiny:latest", "Once upon", raw=True, stream=True, options={"num_predict": 4}
            )
        )
    assert whole.response and whole.done and whole.eval_count == 4
    assert raw[-1].done and raw[-1].eval_count == 4 and raw[-1].done_reason == "length"
    assert "".join(r.response for r in raw[:-1])


@pytest.fixture(scope="module")
def embed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = write_tiny_gguf(tmp_path_factory.mktemp("embed") / "embed.gguf", pooling=True)
    with llama_server(model, "--embedding", ctx_size=512) as url:
        yield url


def test_embed_answers_normalised_vectors(embed_url: str) -> None:
    targets = {"emb": openai_target("emb", embed_url, model="embed")}
    with running_gateway(targets, translations=TRANSLATIONS) as (server, _):
        answer = sdk(server.url).embed("emb", ["first text", "second"])
    assert answer.model == "emb" and len(answer.embeddings) == 2
    for vector in answer.embeddings:
        assert len(vector) == 64
        assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-6)
    assert (answer.prompt_eval_count or 0) > 0


def test_tool_calls_come_back_with_arguments_as_objects(
    tool_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = tool_server
    targets = {"tools:latest": openai_target("tools:latest", url, model="tool-model")}
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    with running_gateway(targets, health_path="/v1/models", translations=TRANSLATIONS) as (
        server,
        _,
    ):
        client = sdk(server.url)
        parts = list(client.chat("tools:latest", messages=history, tools=[tool], stream=True))
        whole = client.chat("tools:latest", messages=history, tools=[tool])
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Paris"}
    assert parts[-1].done and parts[-1].eval_count == 12 and parts[-1].prompt_eval_count == 31
    assert whole.message.tool_calls is not None
    assert whole.message.tool_calls[0].function.arguments == {"city": "Oslo"}
    sent = received[0]["messages"]
    call_id = sent[1]["tool_calls"][0]["id"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == '{"city":"Rome"}'
    assert sent[2] == {"role": "tool", "tool_call_id": call_id, "content": "sunny"}
    assert received[0]["tools"] == [tool]


def test_options_format_and_images_become_openai_fields() -> None:
    png = "iVBORw0KGgo="
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "What is it?", "images": [png]}],
        "format": {"type": "object", "properties": {"a": {"type": "string"}}},
        "options": {"temperature": 0.1, "num_predict": -1, "seed": 3, "num_ctx": 8192},
        "keep_alive": "10m",
    }
    sent = chat_request(body, "backend", stream=False)
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
    ]
    assert sent["response_format"]["json_schema"]["schema"] == body["format"]
    assert sent["temperature"] == 0.1 and sent["seed"] == 3
    assert "max_tokens" not in sent and "num_ctx" not in sent and "keep_alive" not in sent
    path, json_mode = generate_request({"prompt": "x", "format": "json"}, "b", stream=True)
    assert path == "/chat/completions"
    assert json_mode["response_format"] == {"type": "json_object"}


def test_a_suffix_is_refused_in_ollamas_error_shape(llama_url: str) -> None:
    targets = {"tiny:latest": openai_target("tiny:latest", llama_url, model="tiny")}
    with (
        running_gateway(targets, translations=TRANSLATIONS) as (server, _),
        pytest.raises(ollama.ResponseError) as refused,
    ):
        sdk(server.url).generate("tiny:latest", "def f(", suffix="return x")
    assert refused.value.status_code == 400 and "suffix" in refused.value.error


def test_go_json_and_times() -> None:
    assert go_json({"a": "<b>&</b>"}) == b'{"a":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e"}'
    assert created_at(1_726_175_849_110_811_000) == "2024-09-12T21:17:29.110811Z"
    assert created_at(1_726_175_849_000_000_000) == "2024-09-12T21:17:29Z"
