"""llama.cpp's ``llama-server`` (PROTOCOLS.md §3). ``GET /health``: 200 ok, 503 while loading."""

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


def _error_type(body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        value = body["error"].get("type")
        return value if isinstance(value, str) else None
    return None


class LlamaCppAdapter:
    kind: ClassVar[ProviderKind] = ProviderKind.LLAMACPP
    needs_api_key: ClassVar[bool] = False
    label: ClassVar[str] = "llama.cpp"

    def headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def probe(
        self, client: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> ApiProbe:
        resp = await client.get(f"{inst.base_url}/health", headers=self.headers(api_key))
        body = json_or_none(resp)
        if resp.status_code == 503 and _error_type(body) == "unavailable_error":
            return ApiProbe(
                responded=True,
                state=ProviderState.STARTING,
                reason_code="loading_model",
                hint="llama-server is loading the model; it answers when loading is done.",
            )
        if resp.status_code == 401 and _error_type(body) == "authentication_error":
            return unauthorized(inst, bool(api_key))
        if resp.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
            return wrong_service(inst, resp, "llama-server")
        version: str | None = None
        props = await client.get(f"{inst.base_url}/props", headers=self.headers(api_key))
        props_body = json_or_none(props)
        if isinstance(props_body, dict):
            build = props_body.get("build_info")
            version = build if isinstance(build, str) else None
        # In single-model mode a ready llama-server has exactly one model loaded.
        return ApiProbe(responded=True, ok=True, version=version, models_loaded=1)
