"""The OpenAI API (PROTOCOLS.md §5): ``GET /v1/models`` with the key. Needs a key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import httpx

from modelyard.chat.types import ChatOptions, Piece, Target, Turn
from modelyard.config import InstanceConfig, Settings
from modelyard.models.types import ModelEntry
from modelyard.providers import openai_api
from modelyard.providers.base import ApiProbe, Capabilities, Provider
from modelyard.providers.clients import Clients


class OpenAIProvider(Provider):
    kind: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI"
    capabilities: ClassVar[Capabilities] = Capabilities(
        needs_api_key=True, embeddings=True, cloud=True
    )
    api_key_env: ClassVar[str] = "OPENAI_API_KEY"
    known_window: ClassVar[int | None] = 128_000

    def default_instances(self, settings: Settings) -> list[InstanceConfig]:
        return [
            InstanceConfig(
                provider=self.kind,
                id="default",
                base_url=settings.openai_base_url,
                api_key_env=self.api_key_env,
                api_key=settings.openai_api_key,
            )
        ]

    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        return await openai_api.probe_models(http, inst, api_key, self.label)

    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        return await openai_api.list_models(http, inst)

    def chat(
        self, clients: Clients, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        client = openai_api.client_for(clients, target, cloud=True)
        # OpenAI's newer models refuse max_tokens; local servers know only max_tokens.
        return openai_api.stream_chat(
            client,
            target,
            turns,
            options,
            max_tokens_field="max_completion_tokens",
            keeps_connection=True,
        )

    async def embed(
        self, clients: Clients, target: Target, texts: Sequence[str]
    ) -> list[list[float]]:
        client = openai_api.client_for(clients, target, cloud=True)
        return await openai_api.embed(client, target, texts)
