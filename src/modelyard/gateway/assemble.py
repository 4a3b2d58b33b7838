"""A whole OpenAI answer put together from its stream.

llama.cpp's server stops generating when a *streamed* answer's client goes away, but runs a
non-streamed one to its end whatever happens to the connection (measured on b11434: a
hang-up 0.3 s into a 4,000-token answer left the slot busy for the remaining 4 s; streamed,
it was free within 0.6 s). So for such a backend the gateway asks for a stream even when the
client did not, and builds the ``chat.completion`` (or ``text_completion``) here: content,
reasoning and tool-call fragments joined per choice, the finish reason, the usage, and the
other top-level fields the server sent (``system_fingerprint``, ``timings``…) as they are.
"""

from __future__ import annotations

from typing import Any

from modelyard.gateway.translate.openai_events import DONE, chunks
from modelyard.gateway.wire import compact

_OBJECTS = {"chat.completion.chunk": "chat.completion", "text_completion": "text_completion"}


class AnswerAssembler:
    """Feed it complete SSE events of one answer; ``body()`` is the answer as JSON."""

    def __init__(self) -> None:
        self._top: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self.error: Any = None  # an error event, passed on as the body if it comes

    def feed(self, events: bytes) -> None:
        for chunk in chunks(events):
            if chunk is DONE or not isinstance(chunk, dict):
                continue
            if "error" in chunk:
                self.error = chunk
                continue
            for key, value in chunk.items():
                if key != "choices" and (value is not None or key not in self._top):
                    self._top[key] = value
            for choice in chunk.get("choices") or []:
                if isinstance(choice, dict):
                    self._merge(choice)

    def _merge(self, choice: dict[str, Any]) -> None:
        index = int(choice.get("index", 0))
        whole = self._choices.setdefault(index, {"index": index, "finish_reason": None})
        if choice.get("finish_reason") is not None:
            whole["finish_reason"] = choice["finish_reason"]
        if "logprobs" in choice and choice["logprobs"] is not None:
            whole.setdefault("logprobs", {"content": []})
            whole["logprobs"]["content"].extend((choice["logprobs"] or {}).get("content") or [])
        if "text" in choice:  # a completion, not a chat
            whole["text"] = whole.get("text", "") + (choice.get("text") or "")
            return
        message = whole.setdefault("message", {"role": "assistant", "content": None})
        delta = choice.get("delta") or {}
        for field in ("content", "reasoning_content", "refusal"):
            if delta.get(field):
                message[field] = (message.get(field) or "") + delta[field]
        for call in delta.get("tool_calls") or []:
            calls = message.setdefault("tool_calls", [])
            at = int(call.get("index", len(calls)))
            while len(calls) <= at:
                calls.append({"id": None, "type": "function", "function": {"name": None}})
            merged, function = calls[at], call.get("function") or {}
            merged["id"] = call.get("id") or merged["id"]
            if function.get("name"):
                merged["function"]["name"] = function["name"]
            merged["function"]["arguments"] = merged["function"].get("arguments", "") + (
                function.get("arguments") or ""
            )

    def body(self) -> bytes:
        """The answer, or the error the backend sent instead."""
        if self.error is not None:
            return compact(self.error)
        answer = dict(self._top)
        answer["object"] = _OBJECTS.get(str(answer.get("object")), answer.get("object"))
        answer["choices"] = [self._choices[i] for i in sorted(self._choices)]
        return compact(answer)
