"""Metrics, connection info, audit log and API keys."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from modelyard import __version__
from modelyard.access.audit import AuditFilter, AuditOutcome
from modelyard.access.keys import MAX_PATTERNS, KeyLimits, KeyRequest
from modelyard.access.usage import UsageCounts, UsageFilter
from modelyard.api.deps import ServicesDep
from modelyard.api.policy import policy
from modelyard.providers.registry import registry
from modelyard.runtimes.instances import Instance, InstanceOrigin

router = APIRouter(tags=["system"], dependencies=[policy()])


class KeyLimitsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    concurrent_requests: int | None = Field(default=None, ge=1)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] = Field(default_factory=lambda: ["read"])
    models: list[str] | None = Field(default=None, max_length=MAX_PATTERNS)
    expires_at: AwareDatetime | None = None
    limits: KeyLimitsBody = Field(default_factory=KeyLimitsBody)

    def request(self) -> KeyRequest:
        return KeyRequest(
            name=self.name,
            scopes=tuple(self.scopes),
            models=tuple(self.models) if self.models is not None else None,
            expires_at=self.expires_at,
            limits=KeyLimits(**self.limits.model_dump()),
        )


@router.get("/metrics", include_in_schema=True)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


def _no_target() -> str:
    local = [
        p.label for p in registry if p.api_paths.openai is not None and not p.capabilities.cloud
    ]
    return (
        f"# No instance serves the OpenAI API yet: add a {', '.join(local)} instance\n"
        "# (Providers page, or POST /api/providers/{provider}/instances)\n"
        "# and this snippet will use its base URL.\n"
    )


def openai_target(instances: list[Instance]) -> Instance | None:
    """The instance the OpenAI SDK snippet talks to: the first local runtime serving the
    OpenAI API (servers started for one GGUF model last: they come and go), else a hosted
    API that speaks it."""
    speaking = [i for i in instances if registry.get(i.config.provider).api_paths.openai]
    local = sorted(
        (i for i in speaking if not registry.get(i.config.provider).capabilities.cloud),
        key=lambda i: i.origin is InstanceOrigin.MODEL,
    )
    return local[0] if local else next(iter(speaking), None)


def openai_snippet(instances: list[Instance]) -> str:
    """Python for the OpenAI SDK against a configured instance; a key is never written out,
    only the environment variable it is read from."""
    target = openai_target(instances)
    if target is None:
        header, base_url, key = _no_target(), "http://HOST:PORT/v1", "'unused'"
    else:
        cfg = target.config
        header = f"# The OpenAI API of {cfg.key}\n"
        base_url = cfg.base_url if cfg.base_url.endswith("/v1") else f"{cfg.base_url}/v1"
        if cfg.api_key_env:
            header += "import os\n"
            key = f"os.environ[{cfg.api_key_env!r}]"
        else:
            key = "'YOUR_API_KEY'" if cfg.api_key else "'unused'"
    return (
        f"{header}from openai import OpenAI\n"
        f"client = OpenAI(base_url={base_url!r}, api_key={key})\n"
        "print(client.models.list())"
    )


@router.get("/api/connection-info")
async def connection_info(request: Request, services: ServicesDep) -> dict[str, Any]:
    """Base URLs and copy-paste snippets for talking to modelyard and its instances."""
    base = services.settings.public_url or str(request.base_url).rstrip("/")
    endpoints = [
        {"provider": i.config.provider, "id": i.config.id, "base_url": i.config.base_url}
        for i in services.instances.list()
    ]
    return {
        "modelyard": base,
        "openapi": f"{base}/openapi.json",
        "events": base.replace("http", "ws", 1) + "/ws/events",
        "instances": endpoints,
        "open_webui": services.settings.open_webui_url or None,
        "snippets": {
            "curl": f"curl -s {base}/api/providers/status",
            "python": (f"import httpx\nprint(httpx.get('{base}/api/models/list').json())"),
            "openai_sdk": openai_snippet(services.instances.list()),
        },
    }


def _utc(value: datetime | None) -> datetime | None:
    """A time from a query, in UTC (one without an offset is taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def audit_filter(
    key: str = Query(default="", max_length=128, description="a part of the actor"),
    action: str = Query(default="", max_length=256, description='a part of "METHOD path"'),
    outcome: AuditOutcome | None = Query(default=None),
    since: datetime | None = Query(default=None, description="ISO 8601; UTC without offset"),
    until: datetime | None = Query(default=None, description="ISO 8601; UTC without offset"),
) -> AuditFilter:
    return AuditFilter(key, action, outcome, _utc(since), _utc(until))


AuditFilterDep = Annotated[AuditFilter, Depends(audit_filter)]
_EXPORT_COLUMNS = (
    "ts",
    "actor",
    "client",
    "method",
    "path",
    "status",
    "outcome",
    "detail",
    "count",
)


@router.get("/api/audit", dependencies=[policy(read="admin")])
async def audit(
    services: ServicesDep, where: AuditFilterDep, limit: int = Query(default=100, ge=1, le=1000)
) -> dict[str, Any]:
    return {"entries": [entry.wire() for entry in await services.audit.entries(limit, where)]}


@router.get("/api/audit/export", dependencies=[policy(read="admin")])
async def audit_export(
    services: ServicesDep,
    where: AuditFilterDep,
    format: Literal["csv", "json"] = Query(default="csv"),
) -> Response:
    """Every matching entry (the table holds at most ``audit_max_rows``), as a download."""
    found = await services.audit.entries(services.settings.audit_max_rows, where)
    entries = [entry.wire() for entry in found]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    disposition = {"Content-Disposition": f'attachment; filename="audit-{stamp}.{format}"'}
    if format == "json":
        return Response(
            json.dumps({"entries": entries}), media_type="application/json", headers=disposition
        )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(entries)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=disposition)


@router.get("/api/keys", dependencies=[policy(read="admin")])
async def list_keys(services: ServicesDep) -> dict[str, Any]:
    return {"keys": [key.wire() for key in services.api_keys.list()]}


@router.post("/api/keys", status_code=201)
async def create_key(body: KeyCreate, services: ServicesDep) -> dict[str, Any]:
    secret, info = services.api_keys.create(body.request())
    return {**info.wire(), "key": secret}


@router.delete("/api/keys/{key_id}", status_code=204)
async def delete_key(key_id: str, services: ServicesDep) -> Response:
    services.api_keys.delete(key_id)
    return Response(status_code=204)


UsageGroup = Literal["day", "key", "model"]
_USAGE_COLUMNS = [
    "day",
    "key_prefix",
    "key_id",
    "model",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms_sum",
    "ttft_count",
    "ttft_ms_avg",
]


@router.get("/api/usage", dependencies=[policy(read="admin")])
async def usage(
    services: ServicesDep,
    since: date | None = None,
    until: date | None = None,
    key: str = "",
    model: str = "",
    group: Annotated[list[UsageGroup] | None, Query()] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    """Usage per day, key and model, grouped by ``group`` (repeated: ``group=key&group=model``;
    default all three), with the totals; ``format=csv`` for a download of the rows."""
    where = UsageFilter(since=since, until=until, key=key, model=model)
    report = await services.gateway.keys.usage.rows(where, group or ["day", "key", "model"])
    rows = [row.wire() for row in report]
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=_USAGE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        disposition = {"Content-Disposition": 'attachment; filename="usage.csv"'}
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=disposition)
    totals = await services.gateway.keys.usage.rows(where, [])
    body = {"usage": rows, "totals": totals[0].wire() if totals else UsageCounts().wire()}
    return Response(json.dumps(body), media_type="application/json")
