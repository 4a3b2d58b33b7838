"""Pieces shared by the stand-in servers: wire encoding, request recording, scripted replies.

* ``go_json`` / ``go_json_response``: JSON the way Go's ``encoding/json`` writes it (compact,
  ``<``, ``>``, ``&`` escaped as ``\\u003c``…), as Ollama sends it.
* ``RequestLog`` and ``RecordingMiddleware``: every fake records each request it receives
  (method, path, headers, body, status, chunks sent, whether the client disconnected before
  the response was complete), so tests can assert what a client did and did not call.
* ``ReplyScript``: what a chat endpoint streams (text pieces, per-token delay, an optional
  mid-stream error), shared by every fake that chats.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: Any) -> bytes:
    """Encode like Go's json.Marshal: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # These characters can only occur inside JSON strings, so replacing them everywhere is safe.
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode()


def go_json_response(value: Any, status: int = 200) -> Response:
    """A gin ``c.JSON`` response: ``application/json; charset=utf-8``."""
    return Response(
        go_json(value),
        status_code=status,
        headers={"content-type": "application/json; charset=utf-8"},
    )


def go_time(moment: datetime, extra_ns: int = 0, *, with_zone: bool = True) -> str:
    """Go's RFC3339Nano: fraction to nanoseconds with trailing zeros trimmed, ``Z`` for a zero
    offset, else ``±hh:mm`` (the wall clock of the moment's own zone). ``with_zone=False``
    leaves the zone out, as some servers and proxies do."""
    nanos = moment.microsecond * 1000 + extra_ns % 1000
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    if not with_zone:
        return text
    offset = moment.utcoffset()
    if offset is None or not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class BadBody(Exception):
    """The request body is missing or is not the JSON object a handler expects."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _json_error_text(raw: str, error: json.JSONDecodeError) -> str:
    """Go decoder wording for the common malformed-JSON cases."""
    if error.pos >= len(raw.rstrip()):
        return "unexpected EOF"
    char = raw[error.pos]
    if error.msg.startswith("Expecting value"):
        return f"invalid character '{char}' looking for beginning of value"
    return f"invalid character '{char}' after object key:value pair"


_GO_KINDS = {list: "array", str: "string", bool: "bool", int: "number", float: "number"}


async def read_go_body(request: Request, type_name: str) -> dict[str, Any]:
    """Parse a JSON object body with Go's error wording; ``null`` counts as an empty object."""
    raw = (await request.body()).decode(errors="replace")
    if not raw.strip():
        raise BadBody("missing request body")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadBody(_json_error_text(raw, exc)) from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = _GO_KINDS.get(type(value), "value")
        raise BadBody(f"json: cannot unmarshal {kind} into Go value of type api.{type_name}")
    return value


async def read_json_object(request: Request) -> dict[str, Any] | None:
    """A JSON object body, or None when the body is empty, malformed or not an object."""
    try:
        value = json.loads(await request.body() or b"null")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class RecordedRequest:
    """One request a fake received, filled in while it is served."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    status: int | None = None
    chunks_sent: int = 0
    disconnected: bool = False
    finished: threading.Event = field(default_factory=threading.Event)

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None

    def wait_finished(self, timeout: float = 10.0) -> bool:
        """Block until the server is done with this request; False on timeout."""
        return self.finished.wait(timeout)


class RequestLog:
    """Thread-safe list of the requests a fake received, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._changed = threading.Condition(self._lock)

    def add(self, record: RecordedRequest) -> None:
        """Append a record (called by the middleware)."""
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    def entries(self) -> list[RecordedRequest]:
        """A snapshot of every record."""
        with self._lock:
            return list(self._records)

    def for_path(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Records for one path (and method, when given)."""
        return [
            r for r in self.entries() if r.path == path and (method is None or r.method == method)
        ]

    def paths(self) -> list[str]:
        """The paths requested, in order."""
        return [r.path for r in self.entries()]

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._records.clear()

    def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until ``count`` requests for ``path`` arrived; raise TimeoutError otherwise."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: sum(r.path == path for r in self._records) >= count, timeout
            )
            if not ok:
                raise TimeoutError(f"{count} request(s) to {path} did not arrive in {timeout}s")
            return [r for r in self._records if r.path == path]


class RecordingMiddleware:
    """ASGI middleware that records each HTTP request into a RequestLog.

    A client disconnect is noticed because Starlette's streaming responses listen for
    ``http.disconnect`` while they stream; a disconnect before the last body message means
    the client closed the stream early.
    """

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
        )
        self.log.add(record)
        complete = False

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record.body += message.get("body", b"")
            elif message["type"] == "http.disconnect" and not complete:
                record.disconnected = True
            return message

        async def recording_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body":
                record.chunks_sent += bool(message.get("body"))
                complete = complete or not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, recording_receive, recording_send)
        finally:
            record.finished.set()


DEFAULT_REPLY = "Hello! This is a scripted reply from a stand-in model server."


def split_words(text: str) -> list[str]:
    """Split text into word pieces that keep their leading space, like streamed tokens."""
    pieces: list[str] = []
    for index, word in enumerate(text.split(" ")):
        pieces.append(word if index == 0 else " " + word)
    return [p for p in pieces if p]


@dataclass
class ReplyScript:
    """What a chat endpoint streams.

    ``pieces``: the text pieces, one per streamed chunk (None: the words of DEFAULT_REPLY).
    ``token_delay``: seconds to wait before each piece. ``error_after``: when set, stream
    that many pieces and then fail mid-stream with ``error_message``.
    """

    pieces: list[str] | None = None
    token_delay: float = 0.0
    error_after: int | None = None
    error_message: str = "model runner has unexpectedly stopped"

    def pieces_for(self, limit: int | None) -> tuple[list[str], bool]:
        """The pieces to send given a max token count, and whether the limit cut them short."""
        pieces = list(self.pieces) if self.pieces is not None else split_words(DEFAULT_REPLY)
        if limit is not None and 0 <= limit < len(pieces):
            return pieces[:limit], True
        return pieces, False


@dataclass
class StreamEvent:
    """One step of a scripted reply: a text piece, or the mid-stream error."""

    text: str = ""
    error: str | None = None


async def play(script: ReplyScript, pieces: list[str]) -> AsyncIterator[StreamEvent]:
    """Yield the pieces with the script's delay, or the error where the script says so."""
    for index, piece in enumerate(pieces):
        if script.error_after is not None and index >= script.error_after:
            yield StreamEvent(error=script.error_message)
            return
        if script.token_delay:
            await asyncio.sleep(script.token_delay)
        yield StreamEvent(text=piece)
    if script.error_after is not None and script.error_after >= len(pieces):
        yield StreamEvent(error=script.error_message)
