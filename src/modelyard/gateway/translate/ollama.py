"""Ollama's ``/api/chat``, ``/api/generate`` and ``/api/embed`` over an OpenAI backend.

Requests: ``options`` become sampling fields (``num_predict`` → ``max_tokens``), ``format``
becomes ``response_format`` (``"json"`` or a JSON schema), base64 ``images`` become image
parts, tool calls get the ids OpenAI needs (Ollama's have none) and tool results find theirs
by order. ``/api/generate`` with ``raw`` goes to ``/v1/completions`` (no template), otherwise
to chat completions; ``suffix`` (fill-in-the-middle) has no OpenAI equivalent and is refused.

Answers and streams come back as Ollama writes them (``ollama_wire``): NDJSON lines with the
client's model name and ``created_at``, tool calls with ``arguments`` as an object (sent
whole once complete, as Ollama does), a last line with ``done_reason`` (``stop``/``length``),
the token counts and the durations measured here. Embeddings are L2-normalised, as Ollama's
are. ``keep_alive`` and ``num_ctx`` are the scheduler's business and not sent on.
"""

from __future__ import annotations

import json
import math
from typing import Any

from modelyard.errors import InvalidInput
from modelyard.gateway.metering import StreamMeter
from modelyard.gateway.translate.ollama_wire import Clock, created_at, go_json, go_line
from modelyard.gateway.translate.openai_events import DONE, chunks, first_choice, usage_counts
from modelyard.gateway.wire import Dialect

OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "num_predict": "max_tokens",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repeat_penalty": "repeat_penalty",
}
_MAGIC = {"iVBOR": "image/png", "/9j/": "image/jpeg", "R0lG": "image/gif", "UklG": "image/webp"}


def _media_type(data: str) -> str:
    return next((kind for magic, kind in _MAGIC.items() if data.startswith(magic)), "image/png")


def _with_images(text: str, images: Any) -> Any:
    """A message's content: the text, or text and image parts when it carries images."""
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for image in images:
        url = f"data:{_media_type(str(image))};base64,{image}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    sent: dict[str, Any] = {}
    options = body.get("options") or {}
    for theirs, ours in OPTIONS.items():
        value = options.get(theirs)
        if value is None or (theirs == "num_predict" and value < 0):
            continue  # -1: until the model stops, which is OpenAI's default too
        sent[ours] = value
    fmt = body.get("format")
    if fmt == "json":
        sent["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        sent["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": fmt},
        }
    return sent


def _messages(turns: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of tool calls still without a result
    serial = 0
    for turn in turns if isinstance(turns, list) else []:
        if not isinstance(turn, dict):
            raise InvalidInput("each message must be an object", code="invalid_message")
        role, text = turn.get("role", "user"), str(turn.get("content") or "")
        if role == "tool":
            name = turn.get("tool_name")
            match = next((p for p in pending if p[1] == name), pending[0] if pending else None)
            if match is not None:
                pending.remove(match)
            call_id = turn.get("tool_call_id") or (match[0] if match else f"call_{serial}")
            out.append({"role": "tool", "tool_call_id": call_id, "content": text})
            continue
        message: dict[str, Any] = {"role": role, "content": _with_images(text, turn.get("images"))}
        calls = []
        for call in turn.get("tool_calls") or []:
            function = call.get("function") or {}
            serial += 1
            call_id = call.get("id") or f"call_{serial}"
            pending.append((call_id, str(function.get("name"))))
            arguments = function.get("arguments") or {}
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": function.get("name"),
                        "arguments": arguments
                        if isinstance(arguments, str)
                        else json.dumps(arguments, separators=(",", ":")),
                    },
                }
            )
        if calls:
            message["tool_calls"] = calls
            message["content"] = message["content"] or None
        out.append(message)
    return out


def chat_request(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """An ``/api/chat`` request as a chat-completions request."""
    sent: dict[str, Any] = {"model": model, "messages": _messages(body.get("messages"))}
    sent.update(_sampling(body))
    if body.get("tools"):
        sent["tools"] = body["tools"]  # the same shape in both APIs
    sent["stream"] = stream
    return sent


def generate_request(body: dict[str, Any], model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    """An ``/api/generate`` request as (path, request): raw prompts to ``/completions``."""
    if body.get("suffix"):
        raise InvalidInput(
            "'suffix' (fill-in-the-middle) cannot be sent to this model's server",
            code="not_supported",
            hint="Leave out 'suffix', or use an Ollama model for fill-in-the-middle.",
        )
    prompt = str(body.get("prompt") or "")
    if body.get("raw"):
        sent: dict[str, Any] = {"model": model, "prompt": prompt}
        path = "/completions"
    else:
        turns = [{"role": "system", "content": body["system"]}] if body.get("system") else []
        turns.append({"role": "user", "content": prompt, "images": body.get("images")})
        sent = {"model": model, "messages": _messages(turns)}
        path = "/chat/completions"
    sent.update(_sampling(body))
    sent["stream"] = stream
    return path, sent


def embed_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An ``/api/embed`` request as an embeddings request."""
    text = body.get("input")
    if not isinstance(text, str | list):
        raise InvalidInput("invalid input type", code="invalid_input_type")
    sent: dict[str, Any] = {"model": model, "input": text, "encoding_format": "float"}
    if isinstance(body.get("dimensions"), int):
        sent["dimensions"] = body["dimensions"]
    return sent


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    out = []
    for index, call in enumerate(calls or []):
        function = call.get("function") or {}
        raw = function.get("arguments")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) and raw else (raw or {})
        except ValueError:
            arguments = {"_raw": raw}  # a model that wrote broken JSON: keep what it wrote
        name = function.get("name")
        out.append({"function": {"index": index, "name": name, "arguments": arguments}})
    return out


def _done_reason(finish: Any) -> str:
    return "length" if finish == "length" else "stop"


class OllamaStream:
    """Chat-completion (or completion) chunks in, Ollama NDJSON lines out, for one stream."""

    def __init__(self, model: str, chat: bool, clock: Clock) -> None:
        self.model = model
        self.chat = chat
        self.clock = clock
        self._finish: Any = None
        self._calls: dict[int, dict[str, Any]] = {}

    def _line(self, text: str, **extra: Any) -> dict[str, Any]:
        line: dict[str, Any] = {"model": self.model, "created_at": created_at()}
        if self.chat:
            line["message"] = {"role": "assistant", "content": text, **extra}
        else:
            line["response"] = text
            line.update(extra)
        return line

    def feed(self, events: bytes) -> bytes:
        out: list[bytes] = []
        for chunk in chunks(events):
            if chunk is DONE or not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                out.append(go_line({"error": message}))
                continue
            choice = first_choice(chunk)
            delta = choice.get("delta") or {}
            text = delta.get("content") or choice.get("text") or ""
            thinking = delta.get("reasoning_content")
            if text or thinking:
                self.clock.token()
                extra = {"thinking": thinking} if thinking else {}
                out.append(go_line({**self._line(text, **extra), "done": False}))
            for call in delta.get("tool_calls") or []:
                self.clock.token()
                slot = self._calls.setdefault(int(call.get("index", 0)), {"function": {}})
                function = call.get("function") or {}
                if function.get("name"):
                    slot["function"]["name"] = function["name"]
                slot["function"]["arguments"] = slot["function"].get("arguments", "") + (
                    function.get("arguments") or ""
                )
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(out)

    def close(self, meter: StreamMeter) -> bytes:
        """Tool calls (whole, as Ollama sends them), then the ``done`` line."""
        out = []
        if self._calls:
            calls = _tool_calls([self._calls[i] for i in sorted(self._calls)])
            out.append(go_line({**self._line("", tool_calls=calls), "done": False}))
        usage = meter.usage
        last = {**self._line(""), "done": True, "done_reason": _done_reason(self._finish)}
        last.update(self.clock.metrics(usage.prompt_tokens, usage.completion_tokens))
        out.append(go_line(last))
        return b"".join(out)


class _OllamaOverOpenAI:
    client = Dialect.OLLAMA

    def __init__(self) -> None:
        self.model = ""
        self.clock = Clock()


class OllamaChatOverOpenAI(_OllamaOverOpenAI):
    """``relay.Translation`` for ``/api/chat``."""

    path = "/chat/completions"

    def request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        self.model = str(body.get("model", model))
        return chat_request(body, model, stream=body.get("stream", True) is not False)

    def response(self, body: bytes) -> bytes:
        answer = json.loads(body)
        choice = first_choice(answer)
        message = choice.get("message") or {}
        reply: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("reasoning_content"):
            reply["thinking"] = message["reasoning_content"]
        if message.get("tool_calls"):
            reply["tool_calls"] = _tool_calls(message["tool_calls"])
        return go_json(_whole(self, answer, {"message": reply}, choice))

    def stream(self) -> OllamaStream:
        return OllamaStream(self.model, chat=True, clock=self.clock)


class OllamaGenerateOverOpenAI(_OllamaOverOpenAI):
    """``relay.Translation`` for ``/api/generate`` (``path`` is known after ``request``)."""

    path = "/chat/completions"

    def request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        self.model = str(body.get("model", model))
        self.path, sent = generate_request(body, model, body.get("stream", True) is not False)
        return sent

    def response(self, body: bytes) -> bytes:
        answer = json.loads(body)
        choice = first_choice(answer)
        text = choice.get("text") or (choice.get("message") or {}).get("content") or ""
        return go_json(_whole(self, answer, {"response": text}, choice))

    def stream(self) -> OllamaStream:
        return OllamaStream(self.model, chat=False, clock=self.clock)


class OllamaEmbedOverOpenAI(_OllamaOverOpenAI):
    """``relay.Translation`` for ``/api/embed`` (never streamed)."""

    path = "/embeddings"

    def request(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        self.model = str(body.get("model", model))
        return embed_request(body, model)

    def response(self, body: bytes) -> bytes:
        answer = json.loads(body)
        items = sorted(answer.get("data") or [], key=lambda item: item.get("index", 0))
        vectors = [_normalised(item.get("embedding") or []) for item in items]
        prompt, _ = usage_counts(answer)
        reply: dict[str, Any] = {"model": self.model, "embeddings": vectors}
        reply.update(self.clock.metrics(prompt, 0))
        reply.pop("prompt_eval_duration", None)
        reply.pop("eval_duration", None)
        return go_json(reply)

    def stream(self) -> OllamaStream:
        raise InvalidInput("embeddings are not streamed", code="not_supported")


def _whole(
    translation: _OllamaOverOpenAI, answer: Any, content: dict[str, Any], choice: dict[str, Any]
) -> dict[str, Any]:
    translation.clock.token()
    prompt, completion = usage_counts(answer)
    reply = {"model": translation.model, "created_at": created_at(), **content, "done": True}
    reply["done_reason"] = _done_reason(choice.get("finish_reason"))
    reply.update(translation.clock.metrics(prompt, completion))
    return reply


def _normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector
