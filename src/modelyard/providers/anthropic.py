"""The Anthropic API (PROTOCOLS.md §5): ``GET /v1/models`` with ``x-api-key``. Needs a key."""

from __future__ import annotations

from typing import ClassVar

import httpx

from modelyard.config import InstanceConfig, ProviderKind
from modelyard.providers.base import (
    ApiProbe,
    ProviderState,
    describe_http,
    json_or_none,
    unauthorized,
    wrong_service,
)

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicAdapter:
    kind: ClassVar[ProviderKind] = ProviderKind.ANTHROPIC
    needs_api_key: ClassVar[bool] = True
    label: ClassVar[str] = "Anthropic"

    async def probe(
        self, client: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> ApiProbe:
        headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
        resp = await client.get(f"{inst.base_url}/v1/models", headers=headers)
        body = json_or_none(resp)
        if resp.status_code in (401, 403):
            return unauthorized(inst, bool(api_key))
        if resp.status_code in (429, 529) or resp.status_code >= 500:
            return ApiProbe(
                responded=True,
                state=ProviderState.DEGRADED,
                reason_code="rate_limited" if resp.status_code == 429 else "server_error",
                hint=f"Anthropic answered {describe_http(resp)}; try again later.",
            )
        if (
            resp.status_code != 200
            or not isinstance(body, dict)
            or not isinstance(body.get("data"), list)
        ):
            return wrong_service(inst, resp, "the Anthropic API")
        return ApiProbe(responded=True, ok=True, models_loaded=len(body["data"]))
