"""Echo: a seventh, test-only provider, written as any provider is (one module against the
contract in ``modelyard.providers.base``) and registered with one line. Its runtime is the
stand-in in ``tests/fakes/echo.py``. It only answers: it cannot load, delete or pull models,
and modelyard cannot run it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import httpx

from modelyard.chat.types import ChatOptions, Piece, Target, Turn
from modelyard.instance_config import InstanceConfig
from modelyard.models.types import ModelEntry
from modelyard.providers.base import ApiProbe, Capabilities, Provider, json_or_none, wrong_service
from modelyard.providers.clients import Clients
from modelyard.providers.failures import status_error, unreachable
from modelyard.providers.listing import get_json


class EchoProvider(Provider):
    kind: ClassVar[str] = "echo"
    label: ClassVar[str] = "Echo"
    capabilities: ClassVar[Capabilities] = Capabilities()
    start_hint: ClassVar[str] = "Start the echo server"

    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        resp = await http.get(f"{inst.base_url}/hello")
        body = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(body, dict) or body.get("echo") is not True:
            return wrong_service(inst, resp, "an echo server")
        return ApiProbe(responded=True, ok=True, version=str(body.get("version")))

    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        body = await get_json(http, inst, "/models", {})
        return [
            ModelEntry(provider=inst.provider, instance_id=inst.id, name=name, source=self.kind)
            for name in body["models"]
        ]

    async def chat(
        self, clients: Clients, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        body = {
            "model": target.model,
            "messages": [{"role": t.role, "content": t.content} for t in turns],
        }
        try:
            async with clients.http.stream("POST", f"{target.base_url}/chat", json=body) as resp:
                if resp.status_code != 200:
                    raise status_error(resp.status_code, (await resp.aread()).decode(), target)
                async for line in resp.aiter_lines():
                    item = json.loads(line) if line else {}
                    if "token" in item:
                        yield Piece(text=item["token"])
                    elif item.get("done"):
                        yield Piece(
                            prompt_tokens=item["prompt_tokens"],
                            completion_tokens=item["completion_tokens"],
                            finish_reason="stop",
                        )
        except httpx.TransportError as exc:
            raise unreachable(target, exc) from exc
