"""LM Studio (PROTOCOLS.md §4). It answers unknown paths with HTTP 200, so it is recognised only
by ``GET /lmstudio-greeting`` → ``{"lmstudio": true}``, then ``GET /v1/models`` must list."""

from __future__ import annotations

from typing import ClassVar

import httpx

from modelyard.config import InstanceConfig, ProviderKind
from modelyard.providers.base import (
    ApiProbe,
    ProviderState,
    json_or_none,
    unauthorized,
    wrong_service,
)


class LMStudioAdapter:
    kind: ClassVar[ProviderKind] = ProviderKind.LMSTUDIO
    needs_api_key: ClassVar[bool] = False
    label: ClassVar[str] = "LM Studio"

    def headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def probe(
        self, client: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> ApiProbe:
        greet = await client.get(
            f"{inst.base_url}/lmstudio-greeting", headers=self.headers(api_key)
        )
        body = json_or_none(greet)
        if greet.status_code == 401:
            return unauthorized(inst, bool(api_key))
        if (
            greet.status_code != 200
            or not isinstance(body, dict)
            or body.get("lmstudio") is not True
        ):
            return wrong_service(inst, greet, "LM Studio")
        models = await client.get(f"{inst.base_url}/v1/models", headers=self.headers(api_key))
        if models.status_code == 401:
            return unauthorized(inst, bool(api_key))
        listing = json_or_none(models)
        if models.status_code != 200 or not isinstance(listing, dict) or "data" not in listing:
            return ApiProbe(
                responded=True,
                state=ProviderState.DEGRADED,
                reason_code="bad_response",
                hint="LM Studio greets but does not list models; restart its server.",
            )
        loaded = await self._loaded_count(client, inst, api_key)
        version = body.get("version") if isinstance(body.get("version"), str) else None
        return ApiProbe(responded=True, ok=True, version=version, models_loaded=loaded)

    async def _loaded_count(
        self, client: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> int | None:
        resp = await client.get(f"{inst.base_url}/api/v0/models", headers=self.headers(api_key))
        body = json_or_none(resp)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            return None
        return sum(1 for m in data if isinstance(m, dict) and m.get("state") == "loaded")
