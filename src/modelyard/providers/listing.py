"""What the providers' model listings share: a JSON GET whose failures become ``ListingError``
with a reason code, the OpenAI-style ``data`` list, times and the mode a name suggests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from modelyard.clock import as_utc
from modelyard.errors import ListingError
from modelyard.instance_config import InstanceConfig, ModelMode

_EMBED_FAMILIES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "t5encoder"})


async def get_json(
    http: httpx.AsyncClient, inst: InstanceConfig, path: str, headers: Mapping[str, str]
) -> Any:
    """``GET base_url + path`` as JSON; ``ListingError`` (timeout, unreachable, unauthorized,
    upstream_error) when there is no usable answer."""
    try:
        resp = await http.get(f"{inst.base_url}{path}", headers=dict(headers))
    except httpx.TimeoutException as exc:
        raise ListingError(f"{inst.key} did not answer {path} in time", code="timeout") from exc
    except httpx.HTTPError as exc:
        raise ListingError(f"{inst.key} cannot be reached: {exc}", code="unreachable") from exc
    if resp.status_code in (401, 403):
        raise ListingError(
            f"{inst.key} refused the API key ({resp.status_code})",
            code="unauthorized",
            hint="Check the API key configured for this instance.",
        )
    if resp.status_code != 200:
        raise ListingError(f"{inst.key} answered {path} with HTTP {resp.status_code}")
    try:
        return resp.json()
    except ValueError as exc:
        raise ListingError(f"{inst.key} answered {path} with something that is not JSON") from exc


def data_list(body: Any, inst: InstanceConfig, path: str) -> list[dict[str, Any]]:
    """The entries of an OpenAI-style ``{"data": [...]}`` answer that have an ``id``."""
    data = body.get("data") if isinstance(body, dict) else None
    if data is None and isinstance(body, dict) and "error" not in body:
        return []  # Ollama-style "data": null for an empty list
    if not isinstance(data, list):
        raise ListingError(f"{inst.key} answered {path} without a model list")
    return [item for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]


def guess_mode(name: str, family: str | None) -> str:
    """Embedding or reranking from a model's family and name, else llm."""
    lower = name.lower()
    if "rerank" in lower:
        return ModelMode.RERANK.value
    if (family or "").lower() in _EMBED_FAMILIES or "embed" in lower:
        return ModelMode.EMBED.value
    return ModelMode.LLM.value


def server_time(value: datetime | None) -> datetime | None:
    """A time from a server as the instant it names, in UTC. Servers write their local wall
    clock with its offset (Ollama: ``…-07:00``); one that names no zone is taken as UTC.
    Stored and compared in UTC, the same instant is the same value whatever the zone."""
    return None if value is None else as_utc(value)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string from a server as a UTC instant (see ``server_time``), else None."""
    if not isinstance(value, str):
        return None
    try:
        return server_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
