"""The Anthropic API (PROTOCOLS.md §5): ``GET /v1/models`` with ``x-api-key`` (status and
listing, following ``has_more`` pages) and ``/v1/messages`` through the official SDK. Needs
a key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import anthropic
import httpx

from modelyard.chat.types import ChatOptions, Piece, Target, Turn
from modelyard.config import Settings
from modelyard.instance_config import InstanceConfig
from modelyard.models.types import ModelEntry
from modelyard.providers.base import (
    ApiPaths,
    ApiProbe,
    Capabilities,
    Provider,
    ProviderState,
    describe_http,
    json_or_none,
    unauthorized,
    wrong_service,
)
from modelyard.providers.clients import Clients
from modelyard.providers.failures import (
    sdk_message,
    status_error,
    timed_out,
    unreachable,
    upstream_failed,
)
from modelyard.providers.listing import data_list, get_json, parse_time

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # the API requires max_tokens
_PAGES = 20


class AnthropicProvider(Provider):
    kind: ClassVar[str] = "anthropic"
    label: ClassVar[str] = "Anthropic"
    capabilities: ClassVar[Capabilities] = Capabilities(needs_api_key=True, cloud=True)
    api_paths: ClassVar[ApiPaths] = ApiPaths(openai=None, anthropic="/v1")
    api_key_env: ClassVar[str] = "ANTHROPIC_API_KEY"
    known_window: ClassVar[int | None] = 200_000

    def default_instances(self, settings: Settings) -> list[InstanceConfig]:
        return [
            InstanceConfig(
                provider=self.kind,
                id="default",
                base_url=settings.anthropic_base_url,
                api_key_env=self.api_key_env,
                api_key=settings.anthropic_api_key,
            )
        ]

    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
        resp = await http.get(f"{inst.base_url}/v1/models", headers=headers)
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

    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        headers = {"x-api-key": inst.resolved_api_key(), "anthropic-version": ANTHROPIC_VERSION}
        items: list[dict[str, Any]] = []
        path = "/v1/models?limit=1000"
        for _ in range(_PAGES):
            body = await get_json(http, inst, path, headers)
            page = data_list(body, inst, "/v1/models")
            items += page
            if not (isinstance(body, dict) and body.get("has_more") and page):
                break
            path = f"/v1/models?limit=1000&after_id={page[-1]['id']}"
        return [
            ModelEntry(
                provider=inst.provider,
                instance_id=inst.id,
                name=item["id"],
                source=inst.provider,
                modified_at=parse_time(item.get("created_at")),
                meta={"display_name": item.get("display_name")},
            )
            for item in items
        ]

    async def chat(
        self, clients: Clients, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        system = "\n\n".join(t.content for t in turns if t.role == "system")
        messages: Any = [
            {"role": t.role, "content": t.content} for t in turns if t.role != "system"
        ]
        params: dict[str, Any] = {}
        if system:
            params["system"] = system
        # The SDK's ``messages.stream`` (anthropic 2.x) takes no ``temperature`` or ``top_p``
        # argument although the API accepts both: they go in the body as ``extra_body``, which
        # every SDK version merges into the request as it is.
        sampling: dict[str, Any] = {}
        if options.temperature is not None:
            sampling["temperature"] = min(options.temperature, 1.0)  # Anthropic's range is 0-1
        if options.top_p is not None:
            sampling["top_p"] = options.top_p
        if sampling:
            params["extra_body"] = sampling
        # The API's transient failures are worth the SDK's retries (made before any token).
        client = clients.anthropic_client(target.base_url, target.api_key, 2)
        try:
            async with client.messages.stream(
                model=target.model,
                max_tokens=options.max_tokens or DEFAULT_MAX_TOKENS,
                messages=messages,
                **params,
            ) as stream:
                async for event in stream:
                    piece = _piece(event)
                    if piece is not None:
                        yield piece
        except anthropic.APIStatusError as exc:
            raise status_error(exc.status_code, _message(exc), target) from exc
        except anthropic.APITimeoutError as exc:
            raise timed_out(target) from exc
        except anthropic.APIConnectionError as exc:
            raise unreachable(target, exc) from exc
        except anthropic.APIError as exc:  # an error event in the middle of the stream
            raise upstream_failed(_message(exc), target) from exc


def _piece(event: Any) -> Piece | None:
    kind = getattr(event, "type", "")
    if kind == "text":
        return Piece(text=str(event.text)) if event.text else None
    if kind == "thinking":
        return Piece(thinking=True)
    if kind == "message_start":
        return Piece(prompt_tokens=event.message.usage.input_tokens)
    if kind == "message_delta":
        return Piece(
            completion_tokens=event.usage.output_tokens,
            finish_reason=event.delta.stop_reason,
        )
    return None


def _message(exc: anthropic.APIError) -> str:
    return sdk_message(exc.body, exc.message)
