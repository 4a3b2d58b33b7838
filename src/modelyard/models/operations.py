"""Load, unload and delete calls of the runtimes that manage their own models (SPEC §4).

Ollama through the official ``ollama`` client: an empty generate request loads a model,
``keep_alive: 0`` unloads it, ``DELETE /api/delete`` removes it (PROTOCOLS.md §1.3, §2).
LM Studio through its REST API v1 (0.4+): ``/api/v1/models/load`` and ``/unload``; older
servers answer those paths with HTTP 200 and an "Unexpected endpoint" error, which is
reported as ``not_supported``. Foreign errors become modelyard errors here, in one place.
"""

from __future__ import annotations

from typing import Any

import httpx
import ollama

from modelyard.errors import Conflict, ModelyardError, NotFound, Unavailable, UpstreamError
from modelyard.runtimes.instances import Instance


def model_not_found(name: str, instance: Instance) -> NotFound:
    return NotFound(
        f"{instance.key} has no model {name!r}",
        code="model_not_found",
        hint="GET /api/models/list shows every model; sync first if it was just added.",
    )


def _unreachable(instance: Instance, exc: Exception) -> Unavailable:
    return Unavailable(
        f"{instance.key} cannot be reached: {exc}",
        code="provider_unreachable",
        hint="Start the provider (see the Providers page), then try again.",
    )


def _ollama(instance: Instance, timeout: float) -> ollama.AsyncClient:
    key = instance.config.resolved_api_key()
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return ollama.AsyncClient(host=instance.config.base_url, timeout=timeout, headers=headers)


async def _ollama_call(instance: Instance, name: str, timeout: float, call: str) -> None:
    try:
        async with _ollama(instance, timeout) as client:
            if call == "load":
                await client.generate(model=name)
            elif call == "unload":
                await client.generate(model=name, keep_alive=0)
            else:
                await client.delete(name)
    except ollama.ResponseError as exc:
        if exc.status_code == 404:
            raise model_not_found(name, instance) from exc
        raise UpstreamError(
            f"Ollama refused to {call} {name}: {exc.error} (HTTP {exc.status_code})",
            code="upstream_error",
        ) from exc
    except (ConnectionError, httpx.ConnectError) as exc:
        raise _unreachable(instance, exc) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"Ollama failed to {call} {name}: {exc!r}") from exc


async def ollama_load(instance: Instance, name: str, timeout: float) -> None:
    """Load a model into memory (an empty generate request)."""
    await _ollama_call(instance, name, timeout, "load")


async def ollama_unload(instance: Instance, name: str, timeout: float) -> None:
    """Unload a model (``keep_alive: 0``); not an error when it was not loaded."""
    await _ollama_call(instance, name, timeout, "unload")


async def ollama_delete(instance: Instance, name: str, timeout: float) -> None:
    """Delete a model and its unused blobs; 404 ``model_not_found`` when it is not there."""
    await _ollama_call(instance, name, timeout, "delete")


def _lmstudio_headers(instance: Instance) -> dict[str, str]:
    key = instance.config.resolved_api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _lmstudio_unsupported(instance: Instance, what: str) -> Conflict:
    return Conflict(
        f"{instance.key} does not offer {what} through its API",
        code="not_supported",
        hint=f"Use LM Studio itself or 'lms {what.split()[0]}' (LM Studio 0.4+ can do it here).",
    )


async def _lmstudio_post(
    http: httpx.AsyncClient, instance: Instance, path: str, body: dict[str, Any]
) -> httpx.Response:
    try:
        return await http.post(
            f"{instance.config.base_url}{path}", json=body, headers=_lmstudio_headers(instance)
        )
    except httpx.ConnectError as exc:
        raise _unreachable(instance, exc) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"LM Studio failed on {path}: {exc!r}") from exc


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _unexpected_endpoint(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, str) and error.startswith("Unexpected endpoint")


async def lmstudio_load(
    http: httpx.AsyncClient, instance: Instance, name: str, ctx_size: int | None
) -> None:
    """Load one instance of a downloaded model."""
    body: dict[str, Any] = {"model": name}
    if ctx_size:
        body["context_length"] = ctx_size
    resp = await _lmstudio_post(http, instance, "/api/v1/models/load", body)
    answer = _json(resp)
    if _unexpected_endpoint(answer):
        raise _lmstudio_unsupported(instance, "load models")
    if resp.status_code == 404:
        raise model_not_found(name, instance)
    if resp.status_code != 200 or not isinstance(answer, dict) or "error" in answer:
        raise UpstreamError(f"LM Studio could not load {name}: {_detail(resp, answer)}")


async def lmstudio_unload(http: httpx.AsyncClient, instance: Instance, name: str) -> None:
    """Unload every loaded instance of a model; nothing to do when none is loaded."""
    try:
        resp = await http.get(
            f"{instance.config.base_url}/api/v1/models", headers=_lmstudio_headers(instance)
        )
    except httpx.ConnectError as exc:
        raise _unreachable(instance, exc) from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"LM Studio failed to list models: {exc!r}") from exc
    listing = _json(resp)
    if _unexpected_endpoint(listing) or not isinstance(listing, dict):
        raise _lmstudio_unsupported(instance, "unload models")
    models = [m for m in listing.get("models") or [] if isinstance(m, dict)]
    match = next((m for m in models if m.get("key") == name), None)
    if match is None:
        raise model_not_found(name, instance)
    for loaded in match.get("loaded_instances") or []:
        instance_id = loaded.get("id") if isinstance(loaded, dict) else None
        if not isinstance(instance_id, str):
            continue
        resp = await _lmstudio_post(
            http, instance, "/api/v1/models/unload", {"instance_id": instance_id}
        )
        if resp.status_code not in (200, 404):  # 404: it went away meanwhile
            raise UpstreamError(f"LM Studio could not unload {name}: {_detail(resp, _json(resp))}")


def _detail(resp: httpx.Response, body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            return error
    return f"HTTP {resp.status_code}"


def not_supported(instance: Instance, action: str) -> ModelyardError:
    """Cloud and OpenAI-compatible servers decide themselves what is loaded."""
    return Conflict(
        f"{instance.config.provider.value} models cannot be {action} by modelyard",
        code="not_supported",
        hint="The server loads its models itself; there is nothing to start or stop.",
    )
