"""What every provider adapter offers, and the vocabulary of provider status (SPEC §3).

An adapter knows the HTTP details of one runtime and nothing of the store. The API layer of a
status check is ``probe``: one cheap, provider-specific request that never loads a model and
never spends tokens, whose answer must be *recognised* as that provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import httpx

from modelyard.config import InstanceConfig, ProviderKind


class ProviderState(StrEnum):
    UNKNOWN = "UNKNOWN"
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"
    ERROR = "ERROR"

    @classmethod
    def parse(cls, value: str) -> ProviderState:
        """Accept the legacy names READY and DISCONNECTED as aliases."""
        upper = value.strip().upper()
        return cls({"READY": "RUNNING", "DISCONNECTED": "STOPPED"}.get(upper, upper))


@dataclass(frozen=True)
class ApiProbe:
    """The API layer's verdict."""

    responded: bool  # some HTTP answer came back
    ok: bool = False  # recognised as this provider and healthy
    state: ProviderState | None = None  # when the answer itself decides (STARTING, ERROR)
    reason_code: str | None = None
    hint: str | None = None
    version: str | None = None
    models_loaded: int | None = None


def describe_http(resp: httpx.Response) -> str:
    """A short description of an unexpected answer, for hints."""
    ctype = resp.headers.get("content-type", "").split(";")[0] or "no content type"
    return f"HTTP {resp.status_code} ({ctype})"


def json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def wrong_service(inst: InstanceConfig, resp: httpx.Response, expected: str) -> ApiProbe:
    server = resp.headers.get("server") or resp.headers.get("x-powered-by") or ""
    seen = f"{describe_http(resp)}{', server ' + server if server else ''}"
    return ApiProbe(
        responded=True,
        state=ProviderState.ERROR,
        reason_code="wrong_service",
        hint=(
            f"Something else answers on {inst.base_url} ({seen}), not {expected}. "
            "Fix the base URL or free the port."
        ),
    )


def unauthorized(inst: InstanceConfig, has_key: bool) -> ApiProbe:
    hint = (
        "The API key was rejected; check the key configured for this instance."
        if has_key
        else "This server requires an API key; configure one for this instance."
    )
    return ApiProbe(
        responded=True, state=ProviderState.ERROR, reason_code="unauthorized", hint=hint
    )


class ProviderAdapter(Protocol):
    """One runtime's wire details. Registered in ``modelyard.providers.registry``."""

    kind: ClassVar[ProviderKind]
    needs_api_key: ClassVar[bool]
    label: ClassVar[str]

    async def probe(
        self, client: httpx.AsyncClient, inst: InstanceConfig, api_key: str
    ) -> ApiProbe:
        """The API layer of a status check. Raise httpx errors; the caller maps them."""
        ...
