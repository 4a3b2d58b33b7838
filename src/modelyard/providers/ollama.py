"""Ollama (PROTOCOLS.md §1). Recognised by ``GET /api/version`` returning a version string."""

from __future__ import annotations

from typing import ClassVar

import httpx

from modelyard.config import InstanceConfig, ProviderKind
from modelyard.providers.base import (
    ApiProbe,
    ProviderState,
    describe_http,
    json_or_none,
    wrong_service,
)


class OllamaAdapter:
    kind: ClassVar[ProviderKind] = ProviderKind.OLLAMA
    needs_api_key: ClassVar[bool] = False
    label: ClassVar[str] = "Ollama"

    async def probe(
        self, client: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> ApiProbe:
        resp = await client.get(f"{inst.base_url}/api/version")
        body = json_or_none(resp)
        version = body.get("version") if isinstance(body, dict) else None
        if resp.status_code != 200 or not isinstance(version, str):
            # Ollama's own failures are 5xx with {"error": ...}; LM Studio answers 200 with one.
            if (
                resp.status_code >= 500
                and isinstance(body, dict)
                and isinstance(body.get("error"), str)
            ):
                return ApiProbe(
                    responded=True,
                    state=ProviderState.DEGRADED,
                    reason_code="bad_response",
                    hint=f"Ollama answered {describe_http(resp)}: {body['error']}. See its log.",
                )
            return wrong_service(inst, resp, "Ollama")
        loaded = await client.get(f"{inst.base_url}/api/ps")
        ps = json_or_none(loaded)
        models = ps.get("models") if isinstance(ps, dict) else None
        return ApiProbe(
            responded=True,
            ok=True,
            version=version,
            models_loaded=len(models) if isinstance(models, list) else None,
        )
