"""Any OpenAI-compatible server (vLLM, LocalAI, …). Recognised by an OpenAI list shape:
``{"object": "list", "data": [...]}`` at ``/v1/models``; it decides itself what is loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import httpx

from modelyard.chat.types import ChatOptions, Piece, Target, Turn
from modelyard.config import InstanceConfig
from modelyard.models.types import ModelEntry
from modelyard.providers import openai_api
from modelyard.providers.base import ApiProbe, Capabilities, Provider
from modelyard.providers.clients import Clients


class OpenAICompatProvider(Provider):
    kind: ClassVar[str] = "openai_compat"
    label: ClassVar[str] = "OpenAI-compatible"
    capabilities: ClassVar[Capabilities] = Capabilities(embeddings=True)

    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        return await openai_api.probe_models(http, inst, api_key, self.label)

    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        return await openai_api.list_models(http, inst)

    def chat(
        self, clients: Clients, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        client = openai_api.client_for(clients, target, cloud=False)
        return openai_api.stream_chat(client, target, turns, options)

    async def embed(
        self, clients: Clients, target: Target, texts: Sequence[str]
    ) -> list[list[float]]:
        return await openai_api.embed(
            openai_api.client_for(clients, target, cloud=False), target, texts
        )

    async def model_context(self, http: httpx.AsyncClient, target: Target) -> int | None:
        return await openai_api.model_context(http, target)
