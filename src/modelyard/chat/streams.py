"""One internal token stream, whatever the provider, through the official SDKs.

Ollama speaks ``/api/chat`` through ``ollama.AsyncClient``; llama.cpp, LM Studio, other
OpenAI-compatible servers and OpenAI speak ``/v1/chat/completions`` through
``openai.AsyncOpenAI``; Anthropic speaks ``/v1/messages`` through ``anthropic.AsyncAnthropic``.
Each yields ``Piece`` objects. Leaving the iterator early (``aclose``, or a cancelled task)
closes the upstream response, which is how a provider learns to stop generating.

SDK errors become ``ChatError`` with a reason code: ``provider_unreachable``, ``timeout``,
``unauthorized``, ``model_not_found``, ``context_exceeded``, ``bad_request``,
``rate_limited`` or ``upstream_error``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any, cast

import anthropic
import httpx
import ollama
import openai

from modelyard.chat.types import ChatError, ChatOptions, Piece, Target, Turn
from modelyard.config import ProviderKind

ANTHROPIC_DEFAULT_MAX_TOKENS = 4096
_OPENAI_STYLE = {
    ProviderKind.LLAMACPP,
    ProviderKind.LMSTUDIO,
    ProviderKind.OPENAI_COMPAT,
    ProviderKind.OPENAI,
}
_CONTEXT_WORDS = ("context", "exceed_context_size", "too long", "maximum context")
CLOUD = {ProviderKind.OPENAI, ProviderKind.ANTHROPIC}


def _with_v1(base_url: str) -> str:
    """OpenAI-compatible base URLs are given with or without their ``/v1``."""
    return base_url if base_url.endswith("/v1") else f"{base_url}/v1"


def _retries(target: Target) -> int:
    """Cloud APIs have transient failures worth the SDK's retries (made before any token
    arrives); a local server that refuses should be reported at once."""
    return 2 if target.provider in CLOUD else 0


class StreamClients:
    """SDK clients kept per endpoint and key, and the streams built on them.

    The ``openai`` clients share one HTTP client: each would otherwise build its own TLS
    context, about 30 ms, on the way to the first token of the first answer from every new
    endpoint (and a GGUF model gets a new one each time it starts). ``warm`` builds it, and
    loads the SDK's chat modules, before the first answer needs them (~0.2 s, once).
    """

    def __init__(self, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.connect_s = connect_timeout_s
        self.read_s = read_timeout_s
        self._openai_http: openai.DefaultAsyncHttpxClient | None = None
        self._openai_http_lock = threading.Lock()
        self._openai: dict[tuple[str, str], openai.AsyncOpenAI] = {}
        self._anthropic: dict[tuple[str, str], anthropic.AsyncAnthropic] = {}
        self._ollama: dict[str, ollama.AsyncClient] = {}

    def stream(
        self, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        """The token stream of one answer; iterate it inside the task that may be cancelled."""
        if target.provider is ProviderKind.OLLAMA:
            return self._ollama_stream(target, turns, options)
        if target.provider is ProviderKind.ANTHROPIC:
            return self._anthropic_stream(target, turns, options)
        if target.provider in _OPENAI_STYLE:
            return self._openai_stream(target, turns, options)
        raise ChatError("unsupported_provider", f"cannot chat with {target.provider.value}")

    async def aclose(self) -> None:
        """Close every client (at shutdown)."""
        if self._openai_http is not None:
            await self._openai_http.aclose()  # the openai clients' shared HTTP client
            self._openai_http = None
        for an in self._anthropic.values():
            await an.close()
        for ol in self._ollama.values():
            await ol.close()  # type: ignore[no-untyped-call]
        self._openai.clear()
        self._anthropic.clear()
        self._ollama.clear()

    # -- Ollama -------------------------------------------------------------------------------

    def _ollama_client(self, target: Target) -> ollama.AsyncClient:
        client = self._ollama.get(target.base_url)
        if client is None:
            timeout = httpx.Timeout(self.read_s, connect=self.connect_s)
            client = ollama.AsyncClient(host=target.base_url, timeout=timeout)
            self._ollama[target.base_url] = client
        return client

    async def _ollama_stream(
        self, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        params: dict[str, Any] = {
            "temperature": options.temperature,
            "top_p": options.top_p,
            "num_predict": options.max_tokens,
            "num_ctx": options.ctx_size,
        }
        messages = [{"role": t.role, "content": t.content} for t in turns]
        try:
            parts = await self._ollama_client(target).chat(
                model=target.model,
                messages=messages,
                stream=True,
                options={k: v for k, v in params.items() if v is not None},
            )
            async with aclosing(cast(AsyncGenerator[ollama.ChatResponse, None], parts)) as gen:
                async for part in gen:
                    yield _ollama_piece(part)
        except ollama.ResponseError as exc:
            raise _ollama_error(exc, target) from exc
        except httpx.TimeoutException as exc:
            raise _timeout(target) from exc
        except (httpx.TransportError, ConnectionError) as exc:
            raise _unreachable(target, exc) from exc

    # -- OpenAI-compatible ----------------------------------------------------------------------

    def _openai_client(self, target: Target) -> openai.AsyncOpenAI:
        key = (target.base_url, target.api_key)
        client = self._openai.get(key)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=_with_v1(target.base_url),
                # Local servers need no key, but the SDK insists on one.
                api_key=target.api_key or "no-key",
                max_retries=_retries(target),
                timeout=self._openai_timeout(),
                http_client=self._shared_openai_http(),
            )
            self._openai[key] = client
        return client

    def _openai_timeout(self) -> openai.Timeout:
        return openai.Timeout(self.read_s, connect=self.connect_s)

    def _shared_openai_http(self) -> openai.DefaultAsyncHttpxClient:
        with self._openai_http_lock:  # ``warm`` may be building it in a thread
            if self._openai_http is None:
                self._openai_http = openai.DefaultAsyncHttpxClient(timeout=self._openai_timeout())
            return self._openai_http

    def warm(self) -> None:
        """Build the shared HTTP client (its TLS context: ~0.18 s) and load the SDK's chat
        modules (~0.03 s) ahead of the first answer; run in a thread."""
        client = openai.AsyncOpenAI(api_key="warm-up", http_client=self._shared_openai_http())
        _ = client.chat.completions.with_streaming_response  # imports them, once per process

    async def _openai_stream(
        self, target: Target, turns: Sequence[Turn], options: ChatOptions
    ) -> AsyncIterator[Piece]:
        params: dict[str, Any] = {}
        if options.temperature is not None:
            params["temperature"] = options.temperature
        if options.top_p is not None:
            params["top_p"] = options.top_p
        if options.max_tokens is not None:
            # OpenAI's own newer models refuse max_tokens; local servers know only max_tokens.
            name = (
                "max_completion_tokens" if target.provider is ProviderKind.OPENAI else "max_tokens"
            )
            params[name] = options.max_tokens
        messages = [{"role": t.role, "content": t.content} for t in turns]
        client = self._openai_client(target)
        cloud = target.provider in CLOUD
        try:
            # The SDK sends the request and maps HTTP errors, but two of its conveniences are
            # too slow on the way to the first token: it type-walks every message it is given
            # (20 ms for a 50-message history), so the plain-JSON history goes as extra_body,
            # which is sent as it is; and it builds a typed model per chunk, so the chunks are
            # read as plain JSON (a fast local model sends thousands per second).
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
                        if not cloud:
                            # llama-server closes the connection after a stream although it
                            # says keep-alive: reusing it would fail the next answer.
                            break
                    elif chunk is not None:
                        for piece in _openai_pieces(chunk):
                            yield piece
        except openai.APIStatusError as exc:
            raise _status_error(exc.status_code, _openai_message(exc), target) from exc
        except openai.APITimeoutError as exc:
            raise _timeout(target) from exc
        except openai.APIConnectionError as exc:
            raise _unreachable(target, exc) from exc

    # -- Anthropic ------------------------------------------------------------------------------

    def _anthropic_client(self, target: Target) -> anthropic.AsyncAnthropic:
        key = (target.base_url, target.api_key)
        client = self._anthropic.get(key)
        if client is None:
            client = anthropic.AsyncAnthropic(
                base_url=target.base_url.removesuffix("/v1"),  # the SDK adds /v1 itself
                api_key=target.api_key,
                max_retries=_retries(target),
                timeout=anthropic.Timeout(self.read_s, connect=self.connect_s),
            )
            self._anthropic[key] = client
        return client

    async def _anthropic_stream(
        self, target: Target, turns: Sequence[Turn], options: ChatOptions
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
        try:
            async with self._anthropic_client(target).messages.stream(
                model=target.model,
                max_tokens=options.max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS,
                messages=messages,
                **params,
            ) as stream:
                async for event in stream:
                    piece = _anthropic_piece(event)
                    if piece is not None:
                        yield piece
        except anthropic.APIStatusError as exc:
            raise _status_error(exc.status_code, _anthropic_message(exc), target) from exc
        except anthropic.APITimeoutError as exc:
            raise _timeout(target) from exc
        except anthropic.APIConnectionError as exc:
            raise _unreachable(target, exc) from exc
        except anthropic.APIError as exc:  # an error event in the middle of the stream
            raise ChatError("upstream_error", _anthropic_message(exc), failed_hint(target)) from exc


# -- turning SDK objects into pieces ------------------------------------------------------------


def _ollama_piece(part: ollama.ChatResponse) -> Piece:
    message = part.message
    text = message.content or "" if message is not None else ""
    thinking = bool(message is not None and message.thinking)
    if not part.done:
        return Piece(text=text, thinking=thinking and not text)
    return Piece(
        text=text,
        prompt_tokens=part.prompt_eval_count,
        completion_tokens=part.eval_count,
        finish_reason=part.done_reason or "stop",
    )


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
        raise ChatError("upstream_error", str(message or "the stream failed"), failed_hint(target))
    return chunk if isinstance(chunk, dict) else None


def _openai_pieces(chunk: dict[str, Any]) -> list[Piece]:
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


def _anthropic_piece(event: Any) -> Piece | None:
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


# -- errors -----------------------------------------------------------------------------------


def _openai_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return exc.message


def _anthropic_message(exc: anthropic.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return exc.message


def _ollama_error(exc: ollama.ResponseError, target: Target) -> ChatError:
    if exc.status_code == -1:  # an {"error": ...} line in the middle of the stream
        return ChatError("upstream_error", exc.error, failed_hint(target))
    return _status_error(exc.status_code, exc.error, target)


def _status_error(status: int, message: str, target: Target) -> ChatError:
    where = f"{target.key} ({target.base_url})"
    if status < 400:  # an error event after a 200 had started the stream
        return ChatError("upstream_error", message, failed_hint(target))
    if status in (401, 403):
        return ChatError(
            "unauthorized",
            f"{where} refused the request: {message}",
            "Check the API key configured for this instance.",
        )
    if status == 404:
        return ChatError(
            "model_not_found",
            f"{where} does not know the model {target.model!r}: {message}",
            "Pick a model this instance lists, or fetch it first.",
        )
    if status == 429:
        return ChatError("rate_limited", message, "Wait a moment and try again.")
    if status in (400, 413, 422):
        if any(word in message.lower() for word in _CONTEXT_WORDS):
            return ChatError(
                "context_exceeded",
                message,
                "Shorten the message, or raise the context size in the chat options.",
            )
        return ChatError("bad_request", message, "Check the chat options.")
    return ChatError(
        "upstream_error", f"{where} answered HTTP {status}: {message}", failed_hint(target)
    )


def failed_hint(target: Target) -> str:
    """What to do when an instance failed while answering: which one, and where to look."""
    return (
        f"{target.key} ({target.base_url}) failed while answering with {target.model}: "
        "check it on the Providers page and in its log, then send the message again or "
        "regenerate the answer."
    )


def _timeout(target: Target) -> ChatError:
    return ChatError(
        "timeout",
        f"{target.key} did not answer in time",
        "The server may be overloaded or hung; check it on the Providers page.",
    )


def _unreachable(target: Target, exc: BaseException) -> ChatError:
    return ChatError(
        "provider_unreachable",
        f"cannot reach {target.key} at {target.base_url}: {exc}",
        "Start the provider, or check its address on the Providers page.",
    )
