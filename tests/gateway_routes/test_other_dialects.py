"""Anthropic's Messages API and Ollama's API on modelyard's port, with the official
anthropic and ollama SDKs: translated for llama-server, passed through to the Anthropic and
Ollama stand-ins, the listings Ollama clients read."""

from __future__ import annotations

import anthropic
import ollama
import pytest

from tests.gateway_routes.conftest import Stack

HAIKU = "claude-haiku-4-5-20251001"


def claude(stack: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.app.url, api_key=stack.app.services.api_keys.cli_key, max_retries=0
    )


def local_ollama(stack: Stack) -> ollama.Client:
    return ollama.Client(host=stack.app.url + "/ollama")


def test_anthropic_messages_over_llama_server(stack: Stack) -> None:
    sdk = claude(stack)
    message = sdk.messages.create(
        model="tiny.gguf", max_tokens=6, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.type == "message" and message.content[0].type == "text"
    assert message.usage.output_tokens == 6 and message.stop_reason == "max_tokens"
    with sdk.messages.stream(
        model="small", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 5
    counted = sdk.messages.count_tokens(
        model="tiny.gguf", messages=[{"role": "user", "content": "hello there"}]
    )
    assert counted.input_tokens > 0


def test_anthropic_messages_pass_through_to_the_anthropic_api(stack: Stack) -> None:
    message = claude(stack).messages.create(
        model=HAIKU, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.model == HAIKU and message.content
    (sent,) = stack.anthropic.log.for_path("/v1/messages")[-1:]
    assert sent.headers["x-api-key"] == stack.anthropic.state.api_key  # its key, not ours


def test_anthropic_betas_and_headers_reach_the_anthropic_api(stack: Stack) -> None:
    betas = ["token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14"]
    extra = {"anthropic-version": "2023-06-01", "anthropic-dangerous-direct-browser-access": "true"}
    message = claude(stack).beta.messages.create(
        model=HAIKU,
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        betas=betas,
        extra_headers=extra,
    )
    assert message.content
    with claude(stack).beta.messages.stream(
        model=HAIKU, max_tokens=16, messages=[{"role": "user", "content": "hi"}], betas=betas[:1]
    ) as stream:
        assert stream.get_final_text()
    whole, streamed = stack.anthropic.log.for_path("/v1/messages")[-2:]
    assert whole.headers["anthropic-beta"] == ",".join(betas)
    assert whole.headers["anthropic-version"] == "2023-06-01"
    assert whole.headers["anthropic-dangerous-direct-browser-access"] == "true"
    assert streamed.headers["anthropic-beta"] == betas[0]
    for sent in (whole, streamed):  # the backend's key, never the client's
        assert sent.headers["x-api-key"] == stack.anthropic.state.api_key


def test_anthropic_errors_in_anthropics_shape(stack: Stack) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        claude(stack).messages.create(
            model="nope", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
    body = raised.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "not_found_error"
    assert body["code"] == "model_not_found"


def test_ollama_clients_chat_generate_embed_over_llama_server(stack: Stack) -> None:
    sdk = local_ollama(stack)
    answer = sdk.chat(
        model="tiny.gguf",
        messages=[{"role": "user", "content": "hi"}],
        options={"num_predict": 5},
        stream=False,
    )
    assert answer.done and answer.eval_count == 5
    parts = list(
        sdk.generate(model="small", prompt="Once", options={"num_predict": 4}, stream=True)
    )
    assert parts[-1].done and parts[-1].eval_count == 4
    vectors = sdk.embed(model="embed/mini.gguf", input=["one", "two"])
    assert len(vectors.embeddings) == 2


def test_ollama_clients_reach_ollama_as_it_is(stack: Stack) -> None:
    answer = local_ollama(stack).chat(
        model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=False
    )
    assert answer.done
    sent = stack.ollama.log.for_path("/api/chat")[-1]
    assert sent.json()["model"] == "llama3.2:latest"
    assert sent.json()["keep_alive"] == 300  # the scheduler's TTL, not Ollama's default


def test_ollama_listings(stack: Stack) -> None:
    sdk = local_ollama(stack)
    tags = {m.model for m in sdk.list().models}
    assert {"tiny.gguf:latest", "llama3.2:latest", "small:latest"} <= tags
    shown = sdk.show("tiny.gguf")
    assert shown.capabilities == ["completion"]
    assert sdk.ps() is not None
    with pytest.raises(ollama.ResponseError) as raised:
        sdk.show("nope")
    assert raised.value.status_code == 404 and "nope" in raised.value.error
