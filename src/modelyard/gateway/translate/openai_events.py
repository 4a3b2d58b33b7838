"""The OpenAI chunks inside complete SSE events, for the translators (which read them all)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_EVENT_END = re.compile(rb"\r?\n\r?\n")
DONE: Any = object()  # the ``data: [DONE]`` marker


def chunks(events: bytes) -> Iterator[Any]:
    """Each event's parsed ``data:`` (``DONE`` for the end marker); comments and events that
    are not JSON are skipped."""
    for event in _EVENT_END.split(events):
        lines = [
            line[5:].strip()
            for line in event.replace(b"\r\n", b"\n").split(b"\n")
            if line.startswith(b"data:")
        ]
        if not lines:
            continue
        data = b"\n".join(lines)
        if data == b"[DONE]":
            yield DONE
            continue
        try:
            yield json.loads(data)
        except ValueError:
            continue


def first_choice(chunk: Any) -> dict[str, Any]:
    """The first choice of a chunk or answer (``{}`` when it has none)."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def usage_counts(body: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of an OpenAI answer or usage chunk (0 when absent)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )
