"""The OpenAI API as llama.cpp, LM Studio, OpenAI-compatible servers and OpenAI itself speak
it (PROTOCOLS.md §3-§5): the ``/v1/models`` probe and listing, the chat-completions stream
through the official ``openai`` SDK, embeddings, and a model's context from its listing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import httpx
import openai

from modelyard.chat.types import ChatOptions, Piece, Target, Turn
from modelyard.instance_config import InstanceConfig
from modelyard.models.types import ModelEntry
from modelyard.providers.base import (
    ApiProbe,
    Provider,
    ProviderState,
    bearer,
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
from modelyard.providers.listing import data_list, get_json, guess_mode, int_or_none


def models_url(base_url: str) -> str:
    """``/v1/models`` under the base URL, whether or not the base URL already ends in /v1."""
    return f"{base_url}/models" if base_url.endswith("/v1") else f"{base_url}/v1/models"


async def probe_models(
    http: httpx.AsyncClient, inst: InstanceConfig, api_key: str, label: str
) -> ApiProbe:
    """A status probe: ``GET /v1/models`` must answer an OpenAI list."""
    resp = await http.get(models_url(inst.base_url), headers=bearer(api_key))
    body = json_or_none(resp)
    if resp.status_code in (401, 403):
        return unauthorized(inst, bool(api_key))
    if resp.status_code == 429 or resp.status_code >= 500:
        return ApiProbe(
            responded=True,
            state=ProviderState.DEGRADED,
            reason_code="rate_limited" if resp.status_code == 429 else "server_error",
            hint=f"{label} answered {describe_http(resp)}; try again later.",
        )
    data = body.get("data", ...) if isinstance(body, dict) else ...
    if resp.status_code != 200 or not (data is None or isinstance(data, list)):
        return wrong_service(inst, resp, f"an {label} API")
    return ApiProbe(
        responded=True, ok=True, models_loaded=len(data) if isinstance(data, list) else 0
    )


async def list_models(http: httpx.AsyncClient, inst: InstanceConfig) -> list[ModelEntry]:
    """``/v1/models`` of an OpenAI-compatible server or the OpenAI API."""
    body = await get_json(http, inst, "/v1/models", bearer(inst.resolved_api_key()))
    return [
        ModelEntry(
            provider=inst.provider,
            instance_id=inst.id,
            name=item["id"],
            mode=guess_mode(item["id"], None),
            source=inst.provider,
            meta={"owned_by": item.get("owned_by")},
        )
        for item in data_list(body, inst, "/v1/models")
    ]


async def model_context(http: httpx.AsyncClient, target: Target) -> int | None:
    """The context a ``/v1/models`` entry states (llama.cpp ``meta.n_ctx``, vLLM
    ``max_model_len``, others ``context_length``)."""
    resp = await http.get(models_url(target.base_url), headers=bearer(target.api_key))
    for entry in resp.json()["data"]:
        if entry.get("id") == target.model:
            meta = entry.get("meta") or {}
            return (
                int_or_none(meta.get("n_ctx"))
                or int_or_none(entry.get("max_model_len"))
                or int_or_none(entry.get("context_length"))
            )
    return None


class SpeaksOpenAI(Provider):
    """A runtime that answers through the OpenAI API: chat completions and embeddings, and by
    default its status and models from ``/v1/models`` too. A hosted API (``cloud``) gets the
    SDK's retries (made before any token arrives) and keeps its connections; a local server
    that refuses is reported at once."""

    max_tokens_field: ClassVar[str] = "max_tokens"  # OpenAI's newer models refuse it

    async def probe(self, http: httpx.AsyncClient, inst: InstanceConfig, api_key: str) -> ApiProbe:
        return await probe_models(http, inst, api_key, self.label)

    async def list_models(
        self, http: httpx.AsyncClient, inst: InstanceConfig, timeout: float
    ) -> list[ModelEntry]:
        return await list_models(http, inst)

    def chat(
        self, clients: Clients, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        return stream_chat(
            self._client(clients, target),
            target,
            turns,
            options,
            max_tokens_field=self.max_tokens_field,
            keeps_connection=self.capabilities.cloud,
        )

    async def embed(
        self, clients: Clients, target: Target, texts: Sequence[str]
    ) -> list[list[float]]:
        """``POST /v1/embeddings``: one vector per text, in order."""
        with _translated(target):
            answer = await self._client(clients, target).embeddings.create(
                model=target.model, input=list(texts)
            )
        return [list(item.embedding) for item in sorted(answer.data, key=lambda d: d.index)]

    def _client(self, clients: Clients, target: Target) -> openai.AsyncOpenAI:
        retries = 2 if self.capabilities.cloud else 0
        return clients.openai_client(target.base_url, target.api_key, retries)


async def stream_chat(
    client: openai.AsyncOpenAI,
    target: Target,
    turns: Sequence[Turn],
    options: ChatOptions,
    *,
    max_tokens_field: str,
    keeps_connection: bool,
) -> AsyncIterator[Piece]:
    """The chat-completions stream as ``Piece`` objects. ``keeps_connection``: the server may
    reuse the connection after ``[DONE]`` (llama-server closes it although it says
    keep-alive, so reusing it would fail the next answer)."""
    params: dict[str, Any] = {}
    if options.temperature is not None:
        params["temperature"] = options.temperature
    if options.top_p is not None:
        params["top_p"] = options.top_p
    if options.max_tokens is not None:
        params[max_tokens_field] = options.max_tokens
    messages = [{"role": t.role, "content": t.content} for t in turns]
    with _translated(target):
        # The SDK sends the request and maps HTTP errors, but two of its conveniences are too
        # slow on the way to the first token: it type-walks every message it is given (20 ms
        # for a 50-message history), so the plain-JSON history goes as extra_body, which is
        # sent as it is; and it builds a typed model per chunk, so the chunks are read as
        # plain JSON (a fast local model sends thousands per second).
        async with client.chat.completions.with_streaming_response.create(
            model=target.model,
            messages=[],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"messages": messages},
            **params,
        ) as response:
            async for line in response.iter_lines():
                chunk = _sse_data(line, target)
                if chunk is _DONE:
                    if not keeps_connection:
                        break
                elif chunk is not None:
                    for piece in _pieces(chunk):
                        yield piece


@contextmanager
def _translated(target: Target) -> Iterator[None]:
    """The SDK's errors as ``ChatError`` with a reason code."""
    try:
        yield
    except openai.APIStatusError as exc:
        raise status_error(exc.status_code, sdk_message(exc.body, exc.message), target) from exc
    except openai.APITimeoutError as exc:
        raise timed_out(target) from exc
    except openai.APIConnectionError as exc:
        raise unreachable(target, exc) from exc


_DONE: Any = object()


def _sse_data(line: str, target: Target) -> Any:
    """The JSON of one ``data:`` line; ``_DONE`` at ``[DONE]``; None for other lines (blank
    separators, ``:`` keep-alive comments). An error object ends the stream as a ChatError."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
    except ValueError:
        return None
    if isinstance(chunk, dict) and chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise upstream_failed(str(message or "the stream failed"), target)
    return chunk if isinstance(chunk, dict) else None


def _pieces(chunk: dict[str, Any]) -> list[Piece]:
    pieces: list[Piece] = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        # llama.cpp and vLLM put a reasoning model's thoughts in a non-standard field.
        reasoning = bool(delta.get("reasoning_content") or delta.get("reasoning"))
        if text or reasoning:
            pieces.append(Piece(text=text, thinking=reasoning and not text))
        if choice.get("finish_reason"):
            pieces.append(Piece(finish_reason=str(choice["finish_reason"])))
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        pieces.append(
            Piece(
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
            )
        )
    return pieces
