"""LM Studio (PROTOCOLS.md §4). It answers unknown paths with HTTP 200, so it is recognised only
by ``GET /lmstudio-greeting`` → ``{"lmstudio": true}``, then ``GET /v1/models`` must list.

Models come from ``/api/v0/models`` (every downloaded model, loaded or not) with sizes from
``/api/v1/models`` where the server has it (0.4+). Load and unload go through the REST API v1
(``/api/v1/models/load`` and ``/unload``); older servers answer those paths with HTTP 200 and
an "Unexpected endpoint" error, which is reported as ``not_supported``. Chat and embeddings
speak the OpenAI API.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httpx

from modelyard.chat.types import Target
from modelyard.config import Settings
from modelyard.errors import Conflict, UpstreamError
from modelyard.instance_config import InstanceConfig, ModelMode
from modelyard.models.types import ModelEntry, ModelStatus
from modelyard.providers import openai_api
from modelyard.providers.base import (
    ApiProbe,
    Capabilities,
    ProviderState,
    bearer,
    json_or_none,
    model_not_found,
    unauthorized,
    unreachable,
    wrong_service,
)
from modelyard.providers.listing import data_list, get_json, int_or_none


class LMStudioProvider(openai_api.SpeaksOpenAI):
    kind: ClassVar[str] = "lmstudio"
    label: ClassVar[str] = "LM Studio"
    capabilities: ClassVar[Capabilities] = Capabilities(
        loads_models=True, embeddings=True, owns_memory=True
    )
    start_hint: ClassVar[str] = "Start LM Studio's server ('lms server start')"
    fixed_context: ClassVar[bool] = True

    def default_instances(self, settings: Settings) -> list[InstanceConfig]:
        return [InstanceConfig(provider=self.kind, id="default", base_url="http://127.0.0.1:1234")]

    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        greet = await http.get(f"{inst.base_url}/lmstudio-greeting", headers=bearer(api_key))
        body = json_or_none(greet)
        if greet.status_code == 401:
            return unauthorized(inst, bool(api_key))
        if (
            greet.status_code != 200
            or not isinstance(body, dict)
            or body.get("lmstudio") is not True
        ):
            return wrong_service(inst, greet, "LM Studio")
        models = await http.get(f"{inst.base_url}/v1/models", headers=bearer(api_key))
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
        loaded = await self._loaded_count(http, inst, api_key)
        version = body.get("version") if isinstance(body.get("version"), str) else None
        return ApiProbe(responded=True, ok=True, version=version, models_loaded=loaded)

    async def _loaded_count(
        self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> int | None:
        resp = await http.get(f"{inst.base_url}/api/v0/models", headers=bearer(api_key))
        body = json_or_none(resp)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            return None
        return sum(1 for m in data if isinstance(m, dict) and m.get("state") == "loaded")

    # -- models ---------------------------------------------------------------------------

    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        headers = bearer(inst.resolved_api_key())
        answers: tuple[Any, Any] = await asyncio.gather(
            get_json(http, inst, "/api/v0/models", headers),
            get_json(http, inst, "/api/v1/models", headers),
            return_exceptions=True,
        )
        v0, v1 = answers
        if isinstance(v0, BaseException):
            raise v0
        extra: dict[str, dict[str, Any]] = {}
        if isinstance(v1, dict) and isinstance(v1.get("models"), list):  # LM Studio 0.4+
            extra = {m["key"]: m for m in v1["models"] if isinstance(m, dict) and "key" in m}
        return [
            _entry(inst, item, extra.get(item["id"], {}))
            for item in data_list(v0, inst, "/api/v0/models")
        ]

    async def load(
        self, http: httpx.AsyncClient, inst: InstanceConfig, name: str, ctx_size: int | None
    ) -> None:
        """Load one instance of a downloaded model."""
        body: dict[str, Any] = {"model": name}
        if ctx_size:
            body["context_length"] = ctx_size
        resp = await _post(http, inst, "/api/v1/models/load", body)
        answer = json_or_none(resp)
        if _unexpected_endpoint(answer):
            raise _unsupported(inst, "load models")
        if resp.status_code == 404:
            raise model_not_found(name, inst)
        if resp.status_code != 200 or not isinstance(answer, dict) or "error" in answer:
            raise UpstreamError(f"LM Studio could not load {name}: {_detail(resp, answer)}")

    async def unload(self, http: httpx.AsyncClient, inst: InstanceConfig, name: str) -> None:
        """Unload every loaded instance of a model; nothing to do when none is loaded."""
        try:
            resp = await http.get(
                f"{inst.base_url}/api/v1/models", headers=bearer(inst.resolved_api_key())
            )
        except httpx.ConnectError as exc:
            raise unreachable(inst, exc) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"LM Studio failed to list models: {exc!r}") from exc
        listing = json_or_none(resp)
        if _unexpected_endpoint(listing) or not isinstance(listing, dict):
            raise _unsupported(inst, "unload models")
        models = [m for m in listing.get("models") or [] if isinstance(m, dict)]
        match = next((m for m in models if m.get("key") == name), None)
        if match is None:
            raise model_not_found(name, inst)
        for loaded in match.get("loaded_instances") or []:
            instance_id = loaded.get("id") if isinstance(loaded, dict) else None
            if not isinstance(instance_id, str):
                continue
            resp = await _post(http, inst, "/api/v1/models/unload", {"instance_id": instance_id})
            if resp.status_code not in (200, 404):  # 404: it went away meanwhile
                raise UpstreamError(
                    f"LM Studio could not unload {name}: {_detail(resp, json_or_none(resp))}"
                )

    # -- chat -----------------------------------------------------------------------------

    async def model_context(self, http: httpx.AsyncClient, target: Target) -> int | None:
        entry = (await http.get(f"{target.base_url}/api/v0/models/{target.model}")).json()
        return int_or_none(entry.get("loaded_context_length")) or int_or_none(
            entry.get("max_context_length")
        )


def _entry(inst: InstanceConfig, item: dict[str, Any], more: dict[str, Any]) -> ModelEntry:
    kind = str(item.get("type") or "llm")
    loaded = item.get("state") == "loaded"
    instances = [i.get("id") for i in more.get("loaded_instances") or [] if isinstance(i, dict)]
    return ModelEntry(
        provider=inst.provider,
        instance_id=inst.id,
        name=item["id"],
        size=int_or_none(more.get("size_bytes")),
        family=item.get("arch"),
        parameter_size=more.get("params_string"),
        quantization=item.get("quantization"),
        format=item.get("compatibility_type"),
        mode=ModelMode.EMBED.value if kind.startswith("embedding") else ModelMode.LLM.value,
        source="lmstudio",
        status=ModelStatus.LOADED if loaded else ModelStatus.AVAILABLE,
        context_length=item.get("max_context_length"),
        loaded={"instances": instances} if loaded else None,
        meta={"type": kind, "publisher": item.get("publisher")},
    )


async def _post(
    http: httpx.AsyncClient, inst: InstanceConfig, path: str, body: dict[str, Any]
) -> httpx.Response:
    try:
        return await http.post(
            f"{inst.base_url}{path}", json=body, headers=bearer(inst.resolved_api_key())
        )
    except httpx.ConnectError as exc:
        raise unreachable(inst, exc) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"LM Studio failed on {path}: {exc!r}") from exc


def _unsupported(inst: InstanceConfig, what: str) -> Conflict:
    return Conflict(
        f"{inst.key} does not offer {what} through its API",
        code="not_supported",
        hint=f"Use LM Studio itself or 'lms {what.split()[0]}' (LM Studio 0.4+ can do it here).",
    )


def _unexpected_endpoint(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, str) and error.startswith("Unexpected endpoint")


def _detail(resp: httpx.Response, body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            return error
    return f"HTTP {resp.status_code}"
