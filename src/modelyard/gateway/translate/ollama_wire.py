"""Ollama's wire habits, which its clients may rely on (PROTOCOLS §1.1): Go's JSON (compact,
``<`` ``>`` ``&`` escaped), ``created_at`` in RFC 3339 with nanoseconds and trailing zeros
trimmed, durations as integer nanoseconds, metrics left out when zero."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: Any) -> bytes:
    """JSON as Go's ``json.Marshal`` writes it."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # These characters can only occur inside JSON strings, so replacing them anywhere is safe.
    for char, escaped in _GO_ESCAPES.items():
        if char in text:
            text = text.replace(char, escaped)
    return text.encode()


def go_line(value: Any) -> bytes:
    """One NDJSON line."""
    return go_json(value) + b"\n"


def created_at(now_ns: int | None = None) -> str:
    """Now in UTC, as Go's RFC3339Nano: ``2024-09-12T21:17:29.110811Z``."""
    ns = time.time_ns() if now_ns is None else now_ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


class Clock:
    """Durations of one answer in nanoseconds: from the request, to the first token, to the
    end (``total_duration``, ``prompt_eval_duration``, ``eval_duration``)."""

    def __init__(self) -> None:
        self.started = time.monotonic_ns()
        self.first: int | None = None

    def token(self) -> None:
        if self.first is None:
            self.first = time.monotonic_ns()

    def metrics(self, prompt_tokens: int | None, completion_tokens: int) -> dict[str, int]:
        """The metric fields of a final answer, zeros left out as Ollama does."""
        end = time.monotonic_ns()
        first = self.first or end
        values = {
            "total_duration": end - self.started,
            "prompt_eval_count": prompt_tokens or 0,
            "prompt_eval_duration": first - self.started,
            "eval_count": completion_tokens,
            "eval_duration": end - first,
        }
        return {key: value for key, value in values.items() if value}
