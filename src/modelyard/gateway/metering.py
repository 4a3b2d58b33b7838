"""What accounting needs from a relayed stream, read without parsing every chunk.

A meter cuts the upstream bytes at event boundaries (so the client always gets whole events),
counts the events with ``bytes.count`` and looks for the few that matter with ``bytes.find``
and one precompiled pattern: the usage event near the end, the end marker, an in-stream error.
Only those events are parsed, so a long answer costs one JSON parse, not one per token.

OpenAI-style servers send usage in a last chunk with ``"choices": []`` only when asked
(``stream_options.include_usage``). The gateway always asks; when the client did not, the
meter removes that one event again (``strip_usage``), so the client sees the stream it asked
for. An answer cut off before its usage arrived is counted from its chunks (±1 token).
"""

from __future__ import annotations

import json
import re
from typing import Any

from modelyard.gateway.wire import Dialect, Usage

_USAGE = re.compile(rb'"usage"\s*:\s*\{')
_SSE_DELIMITERS = (b"\n\n", b"\r\n\r\n")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _event_json(event: bytes) -> Any:
    """The JSON of an SSE event's ``data:`` line(s), or None."""
    lines = [
        line[5:].strip()
        for line in event.replace(b"\r\n", b"\n").split(b"\n")
        if line.startswith(b"data:")
    ]
    try:
        return json.loads(b"\n".join(lines)) if lines else None
    except ValueError:
        return None


class StreamMeter:
    """Base: framing and counting. ``feed`` returns the complete events ready for the client."""

    delimiter: bytes | None = None

    def __init__(self) -> None:
        self._pending = b""
        self.events = 0  # complete events seen (chunks relayed)
        self.finished = False  # the dialect's end marker arrived
        self.error: str | None = None  # an error the backend sent inside the stream
        self._prompt: int | None = None
        self._completion: int | None = None

    def feed(self, data: bytes) -> bytes:
        """Take upstream bytes; return the whole events among them (maybe fewer bytes)."""
        buf = self._pending + data if self._pending else data
        delimiter = self.delimiter or self._find_delimiter(buf)
        if delimiter is None:
            self._pending = buf
            return b""
        cut = buf.rfind(delimiter)
        if cut < 0:
            self._pending = buf
            return b""
        end = cut + len(delimiter)
        out, self._pending = buf[:end], buf[end:]
        self.events += out.count(delimiter)
        return self._inspect(out, delimiter)

    def flush(self) -> bytes:
        """Whatever is left when the upstream ended without a final delimiter."""
        rest, self._pending = self._pending, b""
        if rest.strip():
            self.events += 1
            return self._inspect(rest, self.delimiter or b"\n\n")
        return rest

    @property
    def usage(self) -> Usage:
        """The backend's usage when it arrived, else counted from the events relayed."""
        if self._completion is not None:
            return Usage(self._prompt, self._completion, exact=True)
        return Usage(self._prompt, max(0, self.counted_tokens()), exact=False)

    def counted_tokens(self) -> int:
        """Tokens estimated from the events relayed (each content event is about one)."""
        raise NotImplementedError

    def _find_delimiter(self, buf: bytes) -> bytes | None:
        found = [(buf.find(d), d) for d in _SSE_DELIMITERS]
        hits = [(at, d) for at, d in found if at >= 0]
        if not hits:
            return None
        self.delimiter = min(hits)[1]
        return self.delimiter

    def _inspect(self, out: bytes, delimiter: bytes) -> bytes:
        raise NotImplementedError


def _bounds(out: bytes, at: int, delimiter: bytes) -> tuple[int, int]:
    """Start and end (after its delimiter) of the event containing offset ``at``."""
    start = out.rfind(delimiter, 0, at)
    start = 0 if start < 0 else start + len(delimiter)
    end = out.find(delimiter, at)
    return start, len(out) if end < 0 else end + len(delimiter)


class OpenAIMeter(StreamMeter):
    """``data: {chunk}`` events; the usage chunk; ``data: [DONE]``."""

    def __init__(self, *, strip_usage: bool = False) -> None:
        super().__init__()
        self.strip_usage = strip_usage
        self._overhead = 1  # the opening chunk carries the role, not a token
        self._stripped = 0

    def counted_tokens(self) -> int:
        return self.events - self._overhead

    def _inspect(self, out: bytes, delimiter: bytes) -> bytes:
        if b"data: [DONE]" in out:
            self.finished = True
            self._overhead += 1
        if b'data: {"error"' in out:
            self._overhead += 1
            self._read_error(out, delimiter)
        if b'"finish_reason":"' in out:
            self._overhead += out.count(b'"finish_reason":"')
        match = _USAGE.search(out)
        while match is not None:
            start, end = _bounds(out, match.start(), delimiter)
            chunk = _event_json(out[start:end])
            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                self._prompt = _int(chunk["usage"].get("prompt_tokens"))
                self._completion = _int(chunk["usage"].get("completion_tokens"))
                if chunk.get("choices") == []:
                    self._overhead += 1
                    if self.strip_usage:
                        out = out[:start] + out[end:]
                        self.events -= 1
                        match = _USAGE.search(out, start)
                        continue
            match = _USAGE.search(out, end)
        return out

    def _read_error(self, out: bytes, delimiter: bytes) -> None:
        start, end = _bounds(out, out.find(b'data: {"error"'), delimiter)
        body = _event_json(out[start:end])
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        self.error = str(message or "error")


class AnthropicMeter(StreamMeter):
    """Named events: ``message_start`` (input tokens), ``content_block_delta`` (one per
    piece), ``message_delta`` (output tokens), ``message_stop``, ``error``."""

    def __init__(self) -> None:
        super().__init__()
        self._deltas = 0

    def counted_tokens(self) -> int:
        return self._deltas

    def _inspect(self, out: bytes, delimiter: bytes) -> bytes:
        self._deltas += out.count(b"event: content_block_delta")
        if b"event: message_stop" in out:
            self.finished = True
        if b"event: error" in out:
            start, end = _bounds(out, out.find(b"event: error"), delimiter)
            body = _event_json(out[start:end])
            error = body.get("error") if isinstance(body, dict) else None
            self.error = str(error.get("message") if isinstance(error, dict) else "error")
        match = _USAGE.search(out)
        while match is not None:
            start, end = _bounds(out, match.start(), delimiter)
            self._read_usage(_event_json(out[start:end]))
            match = _USAGE.search(out, end)
        return out

    def _read_usage(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        holder = event.get("message") if event.get("type") == "message_start" else event
        usage = holder.get("usage") if isinstance(holder, dict) else None
        if not isinstance(usage, dict):
            return
        if _int(usage.get("input_tokens")) is not None:
            self._prompt = _int(usage.get("input_tokens"))
        if event.get("type") == "message_delta":
            self._completion = _int(usage.get("output_tokens"))


class OllamaMeter(StreamMeter):
    """NDJSON: one object a line, the last with ``"done":true`` and the eval counts."""

    delimiter = b"\n"

    def __init__(self) -> None:
        super().__init__()
        self._done_lines = 0
        self.done_reason: str | None = None

    def counted_tokens(self) -> int:
        return self.events - self._done_lines - (self.error is not None)

    def _inspect(self, out: bytes, delimiter: bytes) -> bytes:
        if b'{"error"' in out:
            start, end = _bounds(out, out.find(b'{"error"'), delimiter)
            line = _loads(out[start:end])
            self.error = str(line.get("error")) if isinstance(line, dict) else "error"
        at = out.rfind(b'"done":true')
        if at >= 0:
            self._done_lines += out.count(b'"done":true')
            start, end = _bounds(out, at, delimiter)
            last = _loads(out[start:end])
            if isinstance(last, dict):
                self.finished = True
                self._prompt = _int(last.get("prompt_eval_count"))
                self._completion = _int(last.get("eval_count")) or 0
                reason = last.get("done_reason")
                self.done_reason = reason if isinstance(reason, str) else None
        return out


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def meter_for(dialect: Dialect, *, strip_usage: bool = False) -> StreamMeter:
    """The meter of a stream in ``dialect`` (``strip_usage`` only applies to OpenAI's)."""
    if dialect is Dialect.ANTHROPIC:
        return AnthropicMeter()
    if dialect is Dialect.OLLAMA:
        return OllamaMeter()
    return OpenAIMeter(strip_usage=strip_usage)


def body_usage(dialect: Dialect, body: bytes) -> Usage | None:
    """The usage of a whole (non-streamed) answer, when the backend reported one."""
    data = _loads(body)
    if not isinstance(data, dict):
        return None
    if dialect is Dialect.OLLAMA:
        if "prompt_eval_count" not in data and "eval_count" not in data:
            return None
        return Usage(_int(data.get("prompt_eval_count")), _int(data.get("eval_count")) or 0, True)
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    if dialect is Dialect.ANTHROPIC:
        prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    else:
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(_int(prompt), _int(completion) or 0, exact=True)
