"""OpenAI's API on modelyard's port, with the official openai SDK, in front of the genuine
llama-server on generated GGUF files: a model loaded on demand by its first request, the
names a client may use, listings with state, errors in OpenAI's shape."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.gateway_routes.conftest import Stack
from tests.support.app_server import RunningApp

HI = [{"role": "user", "content": "hi"}]


def client(app: RunningApp, key: str = "") -> openai.OpenAI:
    """The SDK insists on a key (a placeholder would leave it to local trust): the
    CLI's key, which the server makes at each start, unless the test gives another."""
    key = key or app.services.api_keys.cli_key
    return openai.OpenAI(base_url=app.url + "/v1", api_key=key, max_retries=0)


def listed(app: RunningApp) -> dict[str, dict[str, object]]:
    return {m.id: m.model_dump() for m in client(app).models.list().data}


def test_a_request_loads_the_model_and_the_listing_says_so(stack: Stack) -> None:
    sdk = client(stack.app)
    answer = sdk.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=8)
    assert answer.choices[0].message.content is not None
    assert answer.model == "tiny.gguf"  # the server's --alias is the catalog name
    assert answer.usage is not None and answer.usage.completion_tokens == 8

    models = listed(stack.app)
    tiny = models["tiny.gguf"]["modelyard"]
    assert isinstance(tiny, dict)
    assert (tiny["state"], tiny["in_flight"]) == ("loaded", 0)
    assert tiny["qualified_name"] == "llamacpp/local/tiny.gguf"
    assert tiny["ttl_left_s"] is not None  # an idle model used by the gateway counts down
    assert "small" in models  # the alias from the config file
    assert "claude-haiku-4-5-20251001" in models and "llama3.2:latest" in models
    catalog = stack.app.http.get("/api/models/list").json()["models"]
    row = next(m for m in catalog if m["name"] == "tiny.gguf")
    assert row["status"] == "loaded"  # the catalog agrees with the scheduler


def test_every_name_of_a_model_reaches_it_streaming_and_not(stack: Stack) -> None:
    sdk = client(stack.app)
    for name in ("tiny.gguf", "llamacpp/local/tiny.gguf", "small"):
        chunks = list(
            sdk.chat.completions.create(model=name, messages=HI, max_tokens=6, stream=True)
        )
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 1, name
        assert not any(c.usage for c in chunks)  # usage was not asked for: stripped
    text = sdk.completions.create(model="small", prompt="Once upon", max_tokens=5)
    assert text.usage is not None and text.usage.completion_tokens == 5


def test_embeddings_from_an_embedding_model(stack: Stack) -> None:
    vectors = client(stack.app).embeddings.create(model="embed/mini.gguf", input=["a", "b c"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) > 0


def test_responses_and_rerank_where_the_server_has_them(stack: Stack) -> None:
    sdk = client(stack.app)
    response = sdk.responses.create(model="tiny.gguf", input="hi", max_output_tokens=4)
    assert response.output_text
    ranked = httpx.post(
        stack.app.url + "/v1/rerank",
        json={"model": "rerank/judge.gguf", "query": "a cat", "documents": ["cat", "dog"]},
        timeout=60,
    )
    assert ranked.status_code == 200, ranked.text
    assert len(ranked.json()["results"]) == 2
    # A chat model's server runs without --reranking: it says it lacks the endpoint.
    refused = httpx.post(
        stack.app.url + "/v1/rerank",
        json={"model": "tiny.gguf", "query": "a cat", "documents": ["cat"]},
    )
    assert refused.status_code == 501 and refused.json()["error"]["code"] == "not_supported"


def test_an_ollama_model_without_its_tag_means_latest(stack: Stack) -> None:
    # The stand-in's OpenAI endpoint is not there: the answer is its 404, kept as it is.
    sdk = client(stack.app)
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.chat.completions.create(model="llama3.2", messages=HI, max_tokens=4)
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "upstream_rejected"
    assert stack.ollama.log.for_path("/v1/chat/completions")


def test_an_anthropic_model_cannot_answer_openai_requests(stack: Stack) -> None:
    with pytest.raises(openai.ConflictError) as raised:
        client(stack.app).chat.completions.create(
            model="claude-haiku-4-5-20251001", messages=HI, max_tokens=4
        )
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "not_supported"


def test_unknown_models_and_bad_bodies_are_errors_in_openais_shape(stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client(stack.app).chat.completions.create(model="nope", messages=HI)
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "model_not_found"
    url = stack.app.url
    for body, status, code in (
        ({"model": "nope"}, 404, "model_not_found"),
        ({"messages": HI}, 400, "model_required"),
    ):
        answer = httpx.post(url + "/v1/chat/completions", json=body)
        assert answer.status_code == status
        assert answer.json()["code"] == code and answer.json()["error"]["code"] == code
    broken = httpx.post(url + "/v1/chat/completions", content=b"{nope")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    missing = client(stack.app).models
    with pytest.raises(openai.NotFoundError):
        missing.retrieve("nope")
    assert missing.retrieve("tiny.gguf").id == "tiny.gguf"
