"""Any OpenAI-compatible server (vLLM, LocalAI, …). Recognised by an OpenAI list shape:
``{"object": "list", "data": [...]}`` at ``/v1/models``; it decides itself what is loaded."""

from __future__ import annotations

from typing import ClassVar

import httpx

from modelyard.chat.types import Target
from modelyard.providers import openai_api
from modelyard.providers.base import Capabilities


class OpenAICompatProvider(openai_api.SpeaksOpenAI):
    kind: ClassVar[str] = "openai_compat"
    label: ClassVar[str] = "OpenAI-compatible"
    capabilities: ClassVar[Capabilities] = Capabilities(embeddings=True)

    async def model_context(self, http: httpx.AsyncClient, target: Target) -> int | None:
        return await openai_api.model_context(http, target)
