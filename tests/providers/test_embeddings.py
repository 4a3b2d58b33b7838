"""Embeddings through the provider contract, where the runtime has them: Ollama's
``/api/embed`` (the stand-in) and the genuine llama-server's ``/v1/embeddings`` (a tiny GGUF
served with ``--embedding``); a runtime without them says ``not_supported``."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from modelyard.chat.types import Target
from modelyard.errors import ChatError
from modelyard.providers.clients import Clients
from modelyard.providers.registry import registry
from tests.fakes.fixtures import FakeServer
from tests.fakes.ollama_chat import embedding_vector
from tests.fakes.ollama_state import OllamaState
from tests.support.llama import llama_server

TEXTS = ["The sky is blue.", "Grass is green."]


def embed(provider: str, target: Target, texts: list[str]) -> list[list[float]]:
    async def run() -> list[list[float]]:
        clients = Clients(connect_timeout_s=2.0, read_timeout_s=30.0)
        try:
            return await registry.get(provider).embed(clients, target, texts)
        finally:
            await clients.aclose()

    return asyncio.run(run())


def test_ollama_embeds_each_text(ollama_server: FakeServer[OllamaState]) -> None:
    ollama_server.state.add_model("nomic-embed-text", embedding_length=768)
    target = Target("ollama", "default", ollama_server.url, "", "nomic-embed-text")
    vectors = embed("ollama", target, TEXTS)
    assert vectors == [embedding_vector(text, 768) for text in TEXTS]
    sent = ollama_server.log.for_path("/api/embed")[-1].json()
    assert sent["model"] == "nomic-embed-text" and sent["input"] == TEXTS

    ghost = Target("ollama", "default", ollama_server.url, "", "ghost")
    with pytest.raises(ChatError) as err:
        embed("ollama", ghost, TEXTS)
    assert err.value.error_code == "model_not_found"


def test_llama_server_embeds_each_text(tiny_gguf: Path, tmp_path: Path) -> None:
    server = llama_server(tiny_gguf, "--embedding", "--pooling", "mean", log=tmp_path / "log")
    with server as url:
        target = Target("llamacpp", "tiny", url, "", "tiny")
        first, second = embed("llamacpp", target, TEXTS)
        again, _ = embed("llamacpp", target, [TEXTS[0], TEXTS[1]])
    assert len(first) == len(second) > 0
    assert first == again  # the same text, the same vector
    assert first != second
    assert all(math.isfinite(v) for v in first + second)


def test_a_runtime_without_embeddings_says_so() -> None:
    assert not registry.get("anthropic").capabilities.embeddings
    target = Target("anthropic", "default", "http://127.0.0.1:9", "key", "claude")
    with pytest.raises(ChatError) as err:
        embed("anthropic", target, TEXTS)
    assert err.value.error_code == "not_supported"
