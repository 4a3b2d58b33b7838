"""The events of an answer, as its HTTP response streams them (``text/event-stream``, SPEC
§8): ``start``, then ``status`` and ``token`` events, then ``done`` or ``error``. Each one's
JSON form is made by ``wire()`` when the response writes it; its ``…Frame`` type is that form,
which the route's OpenAPI schema documents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from typing_extensions import TypedDict  # pydantic documents these (typing.TypedDict: 3.12+)

from modelyard.chat.types import Usage, UsageFrame


class StartedFrame(TypedDict):
    type: Literal["start"]
    message_id: str
    conversation_id: str
    title: str
    provider: str
    instance_id: str | None
    model: str


class StatusFrame(TypedDict):
    type: Literal["status"]
    text: str


class TokenFrame(TypedDict):
    type: Literal["token"]
    text: str


class DoneFrame(TypedDict):
    type: Literal["done"]
    message_id: str
    state: str  # complete | stopped
    ttft_ms: float | None
    tokens_per_s: float | None
    usage: UsageFrame
    finish_reason: str | None
    provider: str
    instance_id: str | None
    model: str
    trimmed: int


class FailedFrame(TypedDict):
    type: Literal["error"]
    message_id: str
    code: str
    detail: str
    hint: str


AnswerFrame = StartedFrame | StatusFrame | TokenFrame | DoneFrame | FailedFrame


@dataclass(frozen=True, slots=True)
class Started:
    """The answer has begun: where it is stored and which model writes it."""

    message_id: str
    conversation_id: str
    title: str  # the conversation's, which its first message may have just set
    provider: str
    instance_id: str | None  # None: not known until the model is ready
    model: str

    def wire(self) -> StartedFrame:
        return {
            "type": "start",
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "title": self.title,
            "provider": self.provider,
            "instance_id": self.instance_id,
            "model": self.model,
        }


@dataclass(frozen=True, slots=True)
class Status:
    """What the answer waits for (a model loading, a queue, thinking), for the user to read."""

    text: str

    def wire(self) -> StatusFrame:
        return {"type": "status", "text": self.text}


@dataclass(frozen=True, slots=True)
class Token:
    """Text of the answer."""

    text: str

    def wire(self) -> TokenFrame:
        return {"type": "token", "text": self.text}


@dataclass(frozen=True, slots=True)
class Done:
    """The answer ended (complete, or stopped): its figures and the model that wrote it."""

    message_id: str
    state: str  # complete | stopped
    ttft_ms: float | None
    tokens_per_s: float | None
    usage: Usage
    finish_reason: str | None
    provider: str
    instance_id: str | None
    model: str
    trimmed: int  # the oldest messages left out to fit the context

    def wire(self) -> DoneFrame:
        return {
            "type": "done",
            "message_id": self.message_id,
            "state": self.state,
            "ttft_ms": self.ttft_ms,
            "tokens_per_s": self.tokens_per_s,
            "usage": self.usage.wire(),
            "finish_reason": self.finish_reason,
            "provider": self.provider,
            "instance_id": self.instance_id,
            "model": self.model,
            "trimmed": self.trimmed,
        }


@dataclass(frozen=True, slots=True)
class Failed:
    """The answer failed: the error's code, detail and hint (as a problem carries them)."""

    message_id: str
    code: str
    detail: str
    hint: str

    def wire(self) -> FailedFrame:
        return {
            "type": "error",
            "message_id": self.message_id,
            "code": self.code,
            "detail": self.detail,
            "hint": self.hint,
        }


AnswerEvent = Started | Status | Token | Done | Failed
