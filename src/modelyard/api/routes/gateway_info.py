"""``GET /api/gateway/info``: where the gateway is reached and how (the Gateway page)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from modelyard.api.deps import ServicesDep
from modelyard.api.policy import policy
from modelyard.gateway.service import UsableModel
from modelyard.gateway.snippets import GatewayUrls, snippets
from modelyard.instance_config import ModelMode
from modelyard.providers.registry import registry

router = APIRouter(tags=["gateway"], dependencies=[policy(read="inference")])


class GatewayEndpoints(BaseModel):
    openai: str
    anthropic: str
    ollama: str


class GatewayInfo(BaseModel):
    base_url: str  # public_url, else the address this request came to
    public_url: str | None
    tls: bool  # modelyard itself serves HTTPS
    endpoints: GatewayEndpoints
    models: list[str]  # the names a caller may use, as /v1/models lists them
    snippets: dict[str, str]  # openai, anthropic, ollama, curl, open_webui


@router.get("/api/gateway/info", response_model=GatewayInfo)
async def gateway_info(request: Request, services: ServicesDep) -> GatewayInfo:
    settings = services.settings
    base = settings.public_url or str(request.base_url).rstrip("/")
    urls = GatewayUrls(base)
    usable = services.gateway.usable()
    models = [m.name for m in usable]
    ca_file = str(settings.local_ca) if settings.local_ca else None
    return GatewayInfo(
        base_url=base,
        public_url=settings.public_url or None,
        tls=settings.tls,
        endpoints=GatewayEndpoints(
            openai=urls.openai, anthropic=urls.anthropic, ollama=urls.ollama
        ),
        models=models,
        snippets=snippets(urls, _chat_model(usable), ca_file),
    )


def _chat_model(usable: list[UsableModel]) -> str | None:
    """The model the snippets name: a chat model, on this machine rather than a hosted API
    (whose tokens cost money), one already loaded if any (it answers at once)."""
    chat = [m for m in usable if m.model.mode == ModelMode.LLM.value]
    chat.sort(
        key=lambda m: (registry.get(m.model.provider).capabilities.cloud, m.state != "loaded")
    )
    return chat[0].name if chat else None
