"""The OpenAI API (PROTOCOLS.md §5): ``GET /v1/models`` with the key. Needs a key."""

from __future__ import annotations

from typing import ClassVar

import httpx

from modelyard.config import InstanceConfig, ProviderKind
from modelyard.providers.base import ApiProbe
from modelyard.providers.openai_compat import probe_openai_models


class OpenAIAdapter:
    kind: ClassVar[ProviderKind] = ProviderKind.OPENAI
    needs_api_key: ClassVar[bool] = True
    label: ClassVar[str] = "OpenAI"

    async def probe(
        self, client: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> ApiProbe:
        return await probe_openai_models(client, inst, api_key, "OpenAI")
