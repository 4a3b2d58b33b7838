"""Per-provider model listings for the catalog (SPEC §4), as ``ModelEntry`` values.

Each function knows one runtime's wire format and nothing of the store: Ollama through the
official ``ollama`` client (``/api/tags`` and ``/api/ps``), LM Studio through its REST API
(``/api/v0/models``, sizes from ``/api/v1/models`` where the server has it), llama-server and
OpenAI-compatible or cloud servers through ``/v1/models``, GGUF files of the models
directory through ``local_models.scan_models_dir``. Failures raise ``ListingError`` with a
reason code; the catalog keeps the last known rows of an instance it cannot reach.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import ollama

from modelyard.clock import iso
from modelyard.config import ModelMode, ProviderKind
from modelyard.errors import UpstreamError
from modelyard.gguf.files import MetadataCache, scan_models_dir
from modelyard.gguf.metadata import format_parameter_count
from modelyard.providers.registry import adapter_for
from modelyard.runtimes.instances import Instance

LOCAL_INSTANCE = "local"  # the instance id of GGUF files in the models directory
_EMBED_FAMILIES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "t5encoder"})
_ANTHROPIC_VERSION = "2023-06-01"
_ANTHROPIC_PAGES = 20


@dataclass
class ModelEntry:
    """One model as a provider reports it: the catalog fields of SPEC §4."""

    provider: str
    instance_id: str
    name: str
    size: int | None = None
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    format: str | None = None
    digest: str | None = None
    modified_at: datetime | None = None
    mode: str = ModelMode.LLM.value
    source: str = "local"
    status: str = "available"
    context_length: int | None = None
    path: str | None = None
    loaded: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.instance_id, self.name)

    def values(self) -> dict[str, Any]:
        """The column values of a catalog row."""
        return asdict(self)


class ListingError(UpstreamError):
    """An instance's models could not be listed; ``code`` says why."""


def guess_mode(name: str, family: str | None) -> str:
    """Embedding or reranking from a model's family and name, else llm."""
    lower = name.lower()
    if "rerank" in lower:
        return ModelMode.RERANK.value
    if (family or "").lower() in _EMBED_FAMILIES or "embed" in lower:
        return ModelMode.EMBED.value
    return ModelMode.LLM.value


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# -- Ollama ------------------------------------------------------------------------------------


async def list_ollama(instance: Instance, timeout: float) -> list[ModelEntry]:
    """``/api/tags`` merged with ``/api/ps`` (loaded models and their memory)."""
    cfg = instance.config
    key = cfg.resolved_api_key()
    headers = {"Authorization": f"Bearer {key}"} if key else None
    try:
        async with ollama.AsyncClient(host=cfg.base_url, timeout=timeout, headers=headers) as c:
            tags, ps = await asyncio.gather(c.list(), c.ps())
    except ollama.ResponseError as exc:
        raise ListingError(
            f"{cfg.key} answered {exc.status_code}: {exc.error}", code="upstream_error"
        ) from exc
    except (ConnectionError, httpx.HTTPError) as exc:
        raise ListingError(f"{cfg.key} cannot be reached: {exc}", code="unreachable") from exc
    loaded = {
        (m.model or m.name or ""): {
            "size": int(m.size or 0),
            "size_vram": int(m.size_vram or 0),
            "expires_at": iso(_aware(m.expires_at)),
            "context_length": m.context_length,
        }
        for m in ps.models
    }
    entries = []
    for m in tags.models:
        name = m.model or ""
        details = m.details
        family = details.family if details else None
        state = loaded.get(name)
        entries.append(
            ModelEntry(
                provider=cfg.provider.value,
                instance_id=cfg.id,
                name=name,
                size=int(m.size) if m.size is not None else None,
                family=family,
                parameter_size=details.parameter_size if details else None,
                quantization=details.quantization_level if details else None,
                format=details.format if details else None,
                digest=m.digest,
                modified_at=_aware(m.modified_at),
                mode=guess_mode(name, family),
                source="ollama",
                status="loaded" if state else "available",
                context_length=state["context_length"] if state else None,
                loaded=state,
                meta={"families": list(details.families or []) if details else []},
            )
        )
    return entries


# -- HTTP listings ----------------------------------------------------------------------------


async def _get_json(
    http: httpx.AsyncClient, instance: Instance, path: str, headers: Mapping[str, str]
) -> Any:
    cfg = instance.config
    try:
        resp = await http.get(f"{cfg.base_url}{path}", headers=dict(headers))
    except httpx.TimeoutException as exc:
        raise ListingError(f"{cfg.key} did not answer {path} in time", code="timeout") from exc
    except httpx.HTTPError as exc:
        raise ListingError(f"{cfg.key} cannot be reached: {exc}", code="unreachable") from exc
    if resp.status_code in (401, 403):
        raise ListingError(
            f"{cfg.key} refused the API key ({resp.status_code})",
            code="unauthorized",
            hint="Check the API key configured for this instance.",
        )
    if resp.status_code != 200:
        raise ListingError(f"{cfg.key} answered {path} with HTTP {resp.status_code}")
    try:
        return resp.json()
    except ValueError as exc:
        raise ListingError(f"{cfg.key} answered {path} with something that is not JSON") from exc


def _bearer(instance: Instance) -> dict[str, str]:
    key = instance.config.resolved_api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _data_list(body: Any, instance: Instance, path: str) -> list[dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    if data is None and isinstance(body, dict) and "error" not in body:
        return []  # Ollama-style "data": null for an empty list
    if not isinstance(data, list):
        raise ListingError(f"{instance.key} answered {path} without a model list")
    return [item for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]


async def list_lmstudio(http: httpx.AsyncClient, instance: Instance) -> list[ModelEntry]:
    """``/api/v0/models`` (every downloaded model, loaded or not) plus v1 sizes if served."""
    headers = _bearer(instance)
    answers: tuple[Any, Any] = await asyncio.gather(
        _get_json(http, instance, "/api/v0/models", headers),
        _get_json(http, instance, "/api/v1/models", headers),
        return_exceptions=True,
    )
    v0, v1 = answers
    if isinstance(v0, BaseException):
        raise v0
    extra: dict[str, dict[str, Any]] = {}
    if isinstance(v1, dict) and isinstance(v1.get("models"), list):  # LM Studio 0.4+
        extra = {m["key"]: m for m in v1["models"] if isinstance(m, dict) and "key" in m}
    cfg = instance.config
    entries = []
    for item in _data_list(v0, instance, "/api/v0/models"):
        name = item["id"]
        more = extra.get(name, {})
        kind = str(item.get("type") or "llm")
        loaded = item.get("state") == "loaded"
        instances = [i.get("id") for i in more.get("loaded_instances") or [] if isinstance(i, dict)]
        entries.append(
            ModelEntry(
                provider=cfg.provider.value,
                instance_id=cfg.id,
                name=name,
                size=more.get("size_bytes") if isinstance(more.get("size_bytes"), int) else None,
                family=item.get("arch"),
                parameter_size=more.get("params_string"),
                quantization=item.get("quantization"),
                format=item.get("compatibility_type"),
                mode=ModelMode.EMBED.value if kind.startswith("embedding") else ModelMode.LLM.value,
                source="lmstudio",
                status="loaded" if loaded else "available",
                context_length=item.get("max_context_length"),
                loaded={"instances": instances} if loaded else None,
                meta={"type": kind, "publisher": item.get("publisher")},
            )
        )
    return entries


async def list_openai(http: httpx.AsyncClient, instance: Instance) -> list[ModelEntry]:
    """``/v1/models`` of an OpenAI-compatible server or the OpenAI API."""
    body = await _get_json(http, instance, "/v1/models", _bearer(instance))
    cfg = instance.config
    return [
        ModelEntry(
            provider=cfg.provider.value,
            instance_id=cfg.id,
            name=item["id"],
            mode=guess_mode(item["id"], None),
            source=cfg.provider.value,
            meta={"owned_by": item.get("owned_by")},
        )
        for item in _data_list(body, instance, "/v1/models")
    ]


async def _require_llama_server(http: httpx.AsyncClient, instance: Instance) -> None:
    """Raise ``ListingError`` unless a ready llama-server answers (the status check's probe):
    many programs answer ``/v1/models``, and a model is loaded only when llama-server says so."""
    cfg = instance.config
    try:
        probe = await adapter_for(cfg.provider).probe(http, cfg, cfg.resolved_api_key())
    except httpx.TimeoutException as exc:
        raise ListingError(f"{cfg.key} did not answer /health in time", code="timeout") from exc
    except httpx.HTTPError as exc:
        raise ListingError(f"{cfg.key} cannot be reached: {exc}", code="unreachable") from exc
    if not probe.ok:
        state = probe.state.value if probe.state is not None else "not RUNNING"
        raise ListingError(
            f"{cfg.key} is {state} ({probe.reason_code}): its models are not listed as loaded",
            code=probe.reason_code or "not_running",
            hint=probe.hint or "See the instance's status on the Providers page.",
        )


async def list_llamacpp_server(http: httpx.AsyncClient, instance: Instance) -> list[ModelEntry]:
    """``/v1/models`` of a llama-server: one loaded model, or a router's models with states.
    Only once the server is recognised as llama-server and ready (``/health``)."""
    await _require_llama_server(http, instance)
    body = await _get_json(http, instance, "/v1/models", _bearer(instance))
    cfg = instance.config
    entries = []
    for item in _data_list(body, instance, "/v1/models"):
        meta: dict[str, Any] = item["meta"] if isinstance(item.get("meta"), dict) else {}
        status: dict[str, Any] = item["status"] if isinstance(item.get("status"), dict) else {}
        router_state = status.get("value")
        loaded = router_state in (None, "loaded")  # single-model mode answers only when loaded
        params = meta.get("n_params")
        entries.append(
            ModelEntry(
                provider=cfg.provider.value,
                instance_id=cfg.id,
                name=item["id"],
                size=meta.get("size") if isinstance(meta.get("size"), int) else None,
                parameter_size=format_parameter_count(params) if isinstance(params, int) else None,
                format="gguf",
                mode=cfg.mode.value,
                source="local",
                status="loaded" if loaded else "available",
                context_length=meta.get("n_ctx_train"),
                loaded={"base_url": cfg.base_url} if loaded else None,
                meta={"router_state": router_state} if router_state else {},
            )
        )
    return entries


async def list_anthropic(http: httpx.AsyncClient, instance: Instance) -> list[ModelEntry]:
    """``/v1/models`` of the Anthropic API, following ``has_more`` pages."""
    cfg = instance.config
    headers = {"x-api-key": cfg.resolved_api_key(), "anthropic-version": _ANTHROPIC_VERSION}
    items: list[dict[str, Any]] = []
    path = "/v1/models?limit=1000"
    for _ in range(_ANTHROPIC_PAGES):
        body = await _get_json(http, instance, path, headers)
        page = _data_list(body, instance, "/v1/models")
        items += page
        if not (isinstance(body, dict) and body.get("has_more") and page):
            break
        path = f"/v1/models?limit=1000&after_id={page[-1]['id']}"
    return [
        ModelEntry(
            provider=cfg.provider.value,
            instance_id=cfg.id,
            name=item["id"],
            source=cfg.provider.value,
            modified_at=_parse_time(item.get("created_at")),
            meta={"display_name": item.get("display_name")},
        )
        for item in items
    ]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


async def list_instance(
    instance: Instance, http: httpx.AsyncClient, timeout: float
) -> list[ModelEntry]:
    """The models one instance serves right now."""
    kind = instance.config.provider
    if kind is ProviderKind.OLLAMA:
        return await list_ollama(instance, timeout)
    if kind is ProviderKind.LMSTUDIO:
        return await list_lmstudio(http, instance)
    if kind is ProviderKind.LLAMACPP:
        return await list_llamacpp_server(http, instance)
    if kind is ProviderKind.ANTHROPIC:
        return await list_anthropic(http, instance)
    return await list_openai(http, instance)


# -- GGUF files ------------------------------------------------------------------------------


def hf_source(name: str) -> tuple[str, dict[str, Any]] | None:
    """``hf://owner/repo/path`` for a file under ``hf/<owner>/<repo>/`` (SPEC §11), if it is."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != "hf":
        return None
    repo, filename = f"{parts[1]}/{parts[2]}", "/".join(parts[3:])
    return f"hf://{repo}/{filename}", {"source": "hf", "repo": repo, "filename": filename}


def list_local(
    models_dir: Path,
    cache: MetadataCache,
    servers: Mapping[str, dict[str, Any]],
    sources: Mapping[str, str],
) -> list[ModelEntry]:
    """GGUF models of the models directory. ``servers``: model name → server state
    (``status`` and ``loaded``); ``sources``: model name → recorded source."""
    entries = []
    for model in scan_models_dir(models_dir, cache=cache):
        info = model.info
        server = servers.get(model.name, {})
        derived = hf_source(model.name)
        meta: dict[str, Any] = {"split_count": model.split_count}
        if info is not None:
            meta.update(
                architecture=info.architecture,
                parameter_count=info.parameter_count,
                has_chat_template=info.has_chat_template,
                pooling_type=info.pooling_type,
            )
        if model.error:
            meta.update(error=model.error, error_code=model.error_code)
        entries.append(
            ModelEntry(
                provider=ProviderKind.LLAMACPP.value,
                instance_id=LOCAL_INSTANCE,
                name=model.name,
                size=model.size,
                family=info.architecture if info else None,
                parameter_size=info.parameter_size if info else None,
                quantization=model.quantization,
                format="gguf",
                modified_at=model.modified_at,
                mode=model.mode.value,
                source=derived[0] if derived else sources.get(model.name, "local"),
                status=str(server.get("status", "available")),
                context_length=info.context_length if info else None,
                path=str(model.path),
                loaded=server.get("loaded"),
                meta=meta,
            )
        )
    return entries
