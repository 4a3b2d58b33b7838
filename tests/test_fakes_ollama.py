"""The Ollama stand-in speaks Ollama's wire format: the official client and raw bytes agree."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.fakes.fixtures import FakeServer, serve
from tests.fakes.ollama import OllamaState, PullFailure, ReplyScript, create_ollama_app
from tests.support.llama import llama_server

Server = FakeServer[OllamaState]
NOT_FOUND = "pull model manifest: file does not exist"


def lines_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


def test_root_version_and_gin_fallbacks(ollama_server: Server) -> None:
    url = ollama_server.url
    root = httpx.get(url + "/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert root.headers["content-type"] == "text/plain; charset=utf-8"
    head = httpx.head(url + "/")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "17")
    version = httpx.get(url + "/api/version")
    assert version.content == b'{"version":"0.12.3"}'
    assert version.headers["content-type"] == "application/json; charset=utf-8"
    unknown = httpx.get(url + "/health")
    assert (unknown.status_code, unknown.text) == (404, "404 page not found")
    assert unknown.headers["content-type"] == "text/plain"
    wrong_method = httpx.get(url + "/api/pull")
    assert (wrong_method.status_code, wrong_method.text) == (405, "405 method not allowed")
    assert httpx.get(url + "/lmstudio-greeting").status_code == 404
    assert "server" not in root.headers


def test_tags_and_openai_models_follow_the_model_table(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    assert httpx.get(url + "/api/tags").content == b'{"models":[]}'
    assert httpx.get(url + "/v1/models").content == b'{"object":"list","data":null}'

    state.tz = timezone(timedelta(hours=-7))
    older = datetime(2025, 5, 4, 17, 37, 44, 706015, tzinfo=UTC)
    state.add_model("llama3.2", modified_at=older)
    state.add_model("me/Custom:v1", family="qwen2", parameter_size="7.6B", size=4_000_000)
    listed = ollama.Client(host=url).list().models
    assert [m.model for m in listed] == ["me/Custom:v1", "llama3.2:latest"]  # newest first
    assert listed[1].size == 2_019_393_189 and listed[0].details is not None
    assert listed[0].details.family == "qwen2" and listed[0].details.parameter_size == "7.6B"
    raw = httpx.get(url + "/api/tags").json()["models"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", m["digest"]) for m in raw)
    assert re.fullmatch(r"2025-05-04T10:37:44\.706015\d{0,3}-07:00", raw[1]["modified_at"])
    assert raw[1]["details"]["parent_model"] == "" and "capabilities" not in raw[1]
    assert raw[1]["name"] == raw[1]["model"] == "llama3.2:latest"

    state.version = "0.31.0"  # newer servers add capabilities and context/embedding lengths
    newer = httpx.get(url + "/api/tags").json()["models"][1]
    assert newer["capabilities"] == ["completion"]
    assert newer["details"]["context_length"] == 131072

    models = httpx.get(url + "/v1/models").json()["data"]
    assert [(m["id"], m["owned_by"]) for m in models] == [
        ("me/Custom:v1", "me"),
        ("llama3.2:latest", "library"),
    ]
    state.remove_model("LLAMA3.2")  # behind the client's back, any spelling
    assert [m.model for m in ollama.Client(host=url).list().models] == ["me/Custom:v1"]


def test_pull_stream_lines_and_omission_rules(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    state.pull_chunk_bytes = 1000
    entry = state.add_registry_model("qwen2:0.5b", [3500, 800, 2200], config_size=487)
    response = httpx.post(url + "/api/pull", json={"model": "qwen2:0.5b"}, timeout=30)
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = lines_of(response)
    big, tiny, last = entry.layers
    big_lines = [ln for ln in lines if ln.get("digest") == big.digest]
    assert big_lines[0] == {
        "status": f"pulling {big.digest[7:19]}",
        "digest": big.digest,
        "total": 3500,
    }  # completed is left out while it is 0
    assert [ln["completed"] for ln in big_lines[1:]] == [1000, 2000, 3000]  # no final 3500 line
    assert not [ln for ln in lines if ln.get("digest") in (tiny.digest, entry.config.digest)]
    digests = [ln["digest"] for ln in lines if "digest" in ln]
    assert digests == sorted(digests, key=[big.digest, last.digest].index)  # one blob at a time
    assert lines[0] == {"status": "pulling manifest"}
    tail = ["verifying sha256 digest", "writing manifest", "success"]
    assert [ln["status"] for ln in lines[-3:]] == tail
    pulled = ollama.Client(host=url).list().models
    assert [(m.model, m.size) for m in pulled] == [("qwen2:0.5b", 3500 + 800 + 2200 + 487)]

    again = lines_of(httpx.post(url + "/api/pull", json={"model": "qwen2:0.5b"}))
    present = [ln for ln in again if "digest" in ln]
    assert [ln["digest"] for ln in present] == [
        *(b.digest for b in entry.layers),
        entry.config.digest,
    ]
    assert all(ln["completed"] == ln["total"] for ln in present)
    assert "removing unused layers" not in [ln["status"] for ln in again]

    state.add_registry_model("qwen2:0.5b", [3000])  # the registry moved on: old blobs go
    statuses = [
        ln["status"] for ln in lines_of(httpx.post(url + "/api/pull", json={"model": "Qwen2:0.5b"}))
    ]
    assert statuses[-2:] == ["removing unused layers", "success"]


def test_pull_with_the_official_clients(ollama_server: Server) -> None:
    state = ollama_server.state
    state.add_registry_model("tinyllama", [5_000_000, 300], config_size=400)
    state.pull_chunk_bytes = 1_000_000
    client = ollama.Client(host=ollama_server.url)
    parts = list(client.pull("tinyllama", stream=True))
    assert parts[0].status == "pulling manifest" and parts[-1].status == "success"
    assert max(p.completed or 0 for p in parts) == 4_000_000
    assert client.pull("tinyllama").status == "success"  # stream: false
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.pull("missing-model", stream=True))
    assert (streamed.value.error, streamed.value.status_code) == (
        "pull model manifest: file does not exist",
        -1,
    )
    with pytest.raises(ollama.ResponseError) as whole:
        client.pull("missing-model")
    assert whole.value.status_code == 500

    async def async_pull() -> list[str]:
        async_client = ollama.AsyncClient(host=ollama_server.url)
        return [p.status or "" async for p in await async_client.pull("tinyllama", stream=True)]

    assert asyncio.run(async_pull())[-1] == "success"


def test_pull_errors_and_shapes_before_streaming(ollama_server: Server) -> None:
    url = ollama_server.url
    unknown = httpx.post(url + "/api/pull", json={"model": "nope"})
    assert unknown.status_code == 200
    assert unknown.text == (
        '{"status":"pulling manifest"}\n{"error":"pull model manifest: file does not exist"}\n'
    )
    whole = httpx.post(url + "/api/pull", json={"model": "nope", "stream": False})
    assert (whole.status_code, whole.json()) == (500, {"error": NOT_FOUND})
    assert whole.headers["content-type"] == "application/json; charset=utf-8"
    for body, message in [
        ({"model": "a/b/c/d"}, "invalid model name"),
        ({"model": ""}, "invalid model name"),
        (None, "missing request body"),
    ]:
        bad = httpx.post(url + "/api/pull", json=body) if body else httpx.post(url + "/api/pull")
        assert (bad.status_code, bad.json()) == (400, {"error": message})
    garbled = httpx.post(url + "/api/pull", content=b"model=x")
    assert garbled.json() == {"error": "invalid character 'm' looking for beginning of value"}


def test_mid_stream_failure_keeps_bytes_and_the_next_pull_resumes(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    state.pull_chunk_bytes = 1000
    entry = state.add_registry_model("big", [10_000])
    state.pull_failure = PullFailure(after_bytes=4000, message="max retries exceeded: EOF")
    failed = lines_of(httpx.post(url + "/api/pull", json={"model": "big"}))
    assert failed[-1] == {"error": "max retries exceeded: EOF"}
    assert state.model_names() == []
    resumed = lines_of(httpx.post(url + "/api/pull", json={"model": "big"}))
    first = next(ln for ln in resumed if ln.get("digest") == entry.layers[0].digest)
    assert first["completed"] == 4000
    assert resumed[-1] == {"status": "success"}


def test_a_client_closing_the_pull_stream_is_recorded(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    state.pull_chunk_bytes = 1000
    state.add_registry_model("slow", [1_000_000])
    with httpx.stream("POST", url + "/api/pull", json={"model": "slow"}) as response:
        lines = response.iter_lines()
        next(lines), next(lines), next(lines)
    [record] = state.log.wait_for("/api/pull")
    assert record.wait_finished()
    assert record.disconnected and record.json() == {"model": "slow"}
    assert state.model_names() == []
    assert 0 < sum(state.partials.values()) < 1_000_000


def test_delete_and_copy(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    state.add_model("llama3.2")
    client = ollama.Client(host=url)
    assert client.copy("llama3.2", "backup").status == "success"
    assert sorted(state.model_names()) == ["backup:latest", "llama3.2:latest"]
    assert state.model("backup").digest == state.model("llama3.2").digest  # type: ignore[union-attr]
    deleted = httpx.request("DELETE", url + "/api/delete", json={"model": "Llama3.2"})
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert "content-type" not in deleted.headers
    gone = httpx.request("DELETE", url + "/api/delete", json={"model": "llama3.2"})
    assert (gone.status_code, gone.json()) == (404, {"error": "model 'llama3.2' not found"})
    invalid = httpx.request("DELETE", url + "/api/delete", json={"model": "a/b/c/d"})
    assert invalid.json() == {"error": 'name "a/b/c/d" is invalid'}
    missing = httpx.post(url + "/api/copy", json={"source": "nope", "destination": "x"})
    assert (missing.status_code, missing.json()) == (404, {"error": 'model "nope" not found'})
    assert client.delete("backup").status == "success"


def test_generate_loads_and_unloads(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    state.add_model("llama3.2")
    client = ollama.Client(host=url)
    loaded = client.generate("llama3.2", keep_alive=-1)
    assert (loaded.done, loaded.done_reason, loaded.model) == (True, "load", "llama3.2")
    running = client.ps().models
    assert [m.model for m in running] == ["llama3.2:latest"]
    assert running[0].expires_at is not None and running[0].expires_at.year > 2200
    raw = httpx.get(url + "/api/ps").json()["models"][0]
    assert list(raw) == [
        "name", "model", "size", "digest", "details",
        "expires_at", "size_vram", "context_length",
    ]  # fmt: skip
    unloaded = client.generate("llama3.2", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert client.ps().models == []
    text = "".join(p.response or "" for p in client.generate("llama3.2", "Why?", stream=True))
    assert text == "Hello! This is a scripted reply from a stand-in model server."
    assert state.is_loaded("llama3.2")
    with pytest.raises(ollama.ResponseError) as unknown:
        client.generate("foo", "hi")
    assert (unknown.value.error, unknown.value.status_code) == ("model 'foo' not found", 404)


def test_chat_streams_the_script_and_ends_with_metrics(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    state.add_model("llama3.2")
    state.reply = ReplyScript(pieces=["Hi", " there", "!"])
    client = ollama.Client(host=url)
    parts = list(client.chat("LLAMA3.2", [{"role": "user", "content": "say hi"}], stream=True))
    assert [p.message.content for p in parts] == ["Hi", " there", "!", ""]
    final = parts[-1]
    assert (final.done, final.done_reason, final.eval_count, final.model) == (
        True, "stop", 3, "LLAMA3.2",
    )  # fmt: skip
    assert final.total_duration and final.prompt_eval_count == 2
    whole = client.chat("llama3.2", [{"role": "user", "content": "x"}], options={"num_predict": 2})
    assert (whole.message.content, whole.done_reason) == ("Hi there", "length")
    raw = httpx.post(url + "/api/chat", json={"model": "llama3.2", "messages": []}).json()
    assert raw["done_reason"] == "load" and raw["message"] == {"role": "assistant", "content": ""}
    unload = {"model": "llama3.2", "messages": [], "keep_alive": 0}
    assert httpx.post(url + "/api/chat", json=unload).json()["done_reason"] == "unload"
    assert state.loaded_names() == []
    missing = httpx.post(url + "/api/chat", json={"model": "x", "messages": []})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'x' not found"})
    empty = httpx.post(url + "/api/chat", json={"messages": []})
    assert (empty.status_code, empty.json()) == (400, {"error": "model is required"})


def test_chat_mid_stream_error_and_disconnect(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    state.add_model("llama3.2")
    state.reply = ReplyScript(pieces=["a", "b", "c"], error_after=2, error_message="boom")
    client = ollama.Client(host=url)
    seen: list[str] = []
    with pytest.raises(ollama.ResponseError, match="boom"):
        for part in client.chat("llama3.2", [{"role": "user", "content": "x"}], stream=True):
            seen.append(part.message.content or "")
    assert seen == ["a", "b"]
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "stream": False}
    failed = httpx.post(url + "/api/chat", json=body)
    assert (failed.status_code, failed.json()) == (500, {"error": "boom"})

    state.reply = ReplyScript(pieces=[f"w{i} " for i in range(200)], token_delay=0.02)
    body["stream"] = True
    state.log.clear()
    with httpx.stream("POST", url + "/api/chat", json=body) as response:
        lines = response.iter_lines()
        next(lines), next(lines)
    [record] = state.log.for_path("/api/chat", method="POST")
    assert record.wait_finished() and record.disconnected
    assert record.chunks_sent < 200


def test_show_and_embed(ollama_server: Server) -> None:
    url, state = ollama_server.url, ollama_server.state
    state.add_model("nomic-embed-text", family="nomic-bert", capabilities=["embedding"],
                    embedding_length=8)  # fmt: skip
    client = ollama.Client(host=url)
    shown = client.show("nomic-embed-text")
    assert shown.capabilities == ["embedding"]
    assert shown.modelinfo is not None and shown.modelinfo["nomic-bert.embedding_length"] == 8
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("foo")
    assert (missing.value.error, missing.value.status_code) == ("model 'foo:latest' not found", 404)
    vectors = client.embed("nomic-embed-text", ["hello", "world"]).embeddings
    assert len(vectors) == 2 and all(len(v) == 8 for v in vectors)
    assert all(abs(sum(x * x for x in v) - 1) < 1e-6 for v in vectors)
    assert vectors[0] != vectors[1]
    assert client.embed("nomic-embed-text", "hello").embeddings[0] == vectors[0]
    bad = httpx.post(url + "/api/embed", json={"model": "nomic-embed-text", "input": 3})
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid input type"})
    unknown = httpx.post(url + "/api/embed", json={"model": "foo", "input": "x"})
    assert unknown.json() == {"error": 'model "foo" not found, try pulling it first'}


@pytest.fixture
def llama_cpp(tiny_gguf: Path) -> Iterator[str]:
    """The genuine llama-server binary serving the tiny model."""
    with llama_server(tiny_gguf, "-np", "1", ctx_size=512) as url:
        yield url


def test_chat_can_forward_to_a_real_llama_cpp_server(llama_cpp: str) -> None:
    state = OllamaState()
    state.add_model("tiny")
    state.forward_chat_url = llama_cpp
    with serve(create_ollama_app(state), state) as server:
        client = ollama.Client(host=server.url)
        messages = [{"role": "user", "content": "Hello"}]
        parts = list(client.chat("tiny", messages, stream=True, options={"num_predict": 12}))
    text = "".join(p.message.content or "" for p in parts)
    assert parts[-1].done and parts[-1].done_reason == "length"
    assert len(parts) > 2 and text.strip()
