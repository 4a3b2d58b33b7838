"""Any OpenAI-compatible server (vLLM, LocalAI, …), and the shared ``/v1/models`` probe that the
OpenAI adapter reuses. Recognised by an OpenAI list shape: ``{"object": "list", "data": [...]}``."""

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


def models_url(base_url: str) -> str:
    """``/v1/models`` under the base URL, whether or not the base URL already ends in /v1."""
    return f"{base_url}/models" if base_url.endswith("/v1") else f"{base_url}/v1/models"


async def probe_openai_models(
    client: httpx.AsyncClient, inst: InstanceConfig, api_key: str, label: str
) -> ApiProbe:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    resp = await client.get(models_url(inst.base_url), headers=headers)
    body = json_or_none(resp)
    if resp.status_code in (401, 403):
        return unauthorized(inst, bool(api_key))
    if resp.status_code == 429 or resp.status_code >= 500:
        return ApiProbe(
            responded=True,
            state=ProviderState.DEGRADED,
            reason_code="rate_limited" if resp.status_code == 429 else "server_error",
            hint=f"{label} answered {describe_http(resp)}; try again later.",
        )
    data = body.get("data", ...) if isinstance(body, dict) else ...
    if resp.status_code != 200 or not (data is None or isinstance(data, list)):
        return wrong_service(inst, resp, f"an {label} API")
    return ApiProbe(
        responded=True, ok=True, models_loaded=len(data) if isinstance(data, list) else 0
    )


class OpenAICompatAdapter:
    kind: ClassVar[ProviderKind] = ProviderKind.OPENAI_COMPAT
    needs_api_key: ClassVar[bool] = False
    label: ClassVar[str] = "OpenAI-compatible"

    async def probe(
        self, client: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> ApiProbe:
        return await probe_openai_models(client, inst, api_key, "OpenAI-compatible")
