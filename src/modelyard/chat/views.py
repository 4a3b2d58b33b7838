"""A conversation and its messages as the API shows them, and what the store writes of them.

The views are made from the store's rows; their JSON form is made by ``wire()`` at the route.
The column types name what a statement writes, so that nothing but a column reaches a row."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Self, cast

from typing_extensions import TypedDict  # pydantic documents these (typing.TypedDict: 3.12+)

from modelyard.chat.types import StoredOptions, Usage
from modelyard.clock import iso
from modelyard.store.tables import ConversationRow, MessageRow


class ConversationColumns(TypedDict, total=False):
    """What creating or changing a conversation writes (left out: unchanged, or the
    column's default)."""

    provider: str
    instance_id: str
    model: str
    title: str
    system: str
    options: StoredOptions


class AnswerColumns(TypedDict, total=False):
    """How an answer ended, as its row keeps it (``instance_id``: the instance that served
    it, once known)."""

    content: str
    state: str
    error: str | None
    ttft_ms: float | None
    tokens_per_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    instance_id: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message a turn adds: the user's (no model) or the answer being written."""

    id: str
    seq: int
    role: str  # user | assistant
    content: str
    state: str
    provider: str | None = None
    instance_id: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as the API shows it."""

    id: str
    seq: int
    role: str  # system | user | assistant
    content: str
    provider: str | None
    instance_id: str | None
    model: str | None
    state: str  # complete | streaming | stopped | error
    error: str | None
    ttft_ms: float | None
    tokens_per_s: float | None
    usage: Usage
    created_at: str  # RFC 3339

    @classmethod
    def of(cls, row: MessageRow) -> MessageView:
        return cls(
            row.id, row.seq, row.role, row.content, row.provider, row.instance_id, row.model,
            row.state, row.error, row.ttft_ms, row.tokens_per_s,
            Usage(row.prompt_tokens, row.completion_tokens), iso(row.created_at),
        )  # fmt: skip

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "role": self.role,
            "content": self.content,
            "provider": self.provider,
            "instance_id": self.instance_id,
            "model": self.model,
            "state": self.state,
            "error": self.error,
            "ttft_ms": self.ttft_ms,
            "tokens_per_s": self.tokens_per_s,
            "usage": self.usage.wire(),
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A conversation without its messages (the list, and a conversation just created)."""

    id: str
    title: str
    provider: str
    instance_id: str
    model: str
    system: str
    options: StoredOptions
    created_at: str  # RFC 3339
    updated_at: str  # RFC 3339
    message_count: int

    @classmethod
    def of(cls, row: ConversationRow, count: int) -> Self:
        options = cast(StoredOptions, row.options or {})  # wire() copies it
        return cls(
            row.id, row.title, row.provider, row.instance_id, row.model, row.system, options,
            iso(row.created_at), iso(row.updated_at), count,
        )  # fmt: skip

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "provider": self.provider,
            "instance_id": self.instance_id,
            "model": self.model,
            "system": self.system,
            "options": dict(self.options),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "message_count": self.message_count,
        }


@dataclass(frozen=True, slots=True)
class Conversation(ConversationSummary):
    """A conversation with all its messages, oldest first, and whether an answer is being
    written in it."""

    messages: tuple[MessageView, ...] = ()
    generating: bool = False

    @classmethod
    def loaded(cls, row: ConversationRow) -> Conversation:
        """From a row whose messages are loaded."""
        messages = tuple(MessageView.of(m) for m in row.messages)
        return replace(cls.of(row, len(messages)), messages=messages)

    def wire(self) -> dict[str, Any]:
        body = ConversationSummary.wire(self)
        count = body.pop("message_count")  # after the messages, as the API has always put it
        body.update(
            messages=[m.wire() for m in self.messages],
            message_count=count,
            generating=self.generating,
        )
        return body


@dataclass(frozen=True, slots=True)
class Stopped:
    """What stopping a conversation's answer did: the answer kept, if one was being written."""

    stopped: bool
    message_id: str | None

    def wire(self) -> dict[str, Any]:
        return {"stopped": self.stopped, "message_id": self.message_id}
