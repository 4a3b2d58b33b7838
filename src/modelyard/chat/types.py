"""The vocabulary of chat: turns, options, where a message goes, and what a stream yields."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict  # pydantic documents these (typing.TypedDict: 3.12+)


class StoredOptions(TypedDict, total=False):
    """A conversation's options as its JSON column keeps them (unset ones left out)."""

    temperature: float
    top_p: float
    max_tokens: int
    ctx_size: int


class ChatOptions(BaseModel):
    """Generation options of a conversation or of one message (unset: the provider's default)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_048_576)
    ctx_size: int | None = Field(default=None, ge=64, le=1_048_576)

    def merged(self, override: ChatOptions | None) -> ChatOptions:
        """These options with every field set in ``override`` replacing ours."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))

    @classmethod
    def kept(cls, stored: object) -> ChatOptions:
        """A conversation's stored options; ones that no longer validate are dropped."""
        try:
            return cls.model_validate(stored or {})
        except ValidationError:
            return cls()

    def stored(self) -> StoredOptions:
        """The options worth keeping (unset ones are left out)."""
        return cast(StoredOptions, self.model_dump(exclude_none=True))


class UsageFrame(TypedDict):
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens an answer took, as its provider counted them (None: not reported)."""

    prompt_tokens: int | None
    completion_tokens: int | None

    def wire(self) -> UsageFrame:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True)
class Turn:
    """One message sent to a model."""

    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class Target:
    """Where a message goes: one model of one instance."""

    provider: str  # its kind
    instance_id: str
    base_url: str
    api_key: str
    model: str

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.instance_id}"


@dataclass(frozen=True)
class Piece:
    """One item of the internal stream: text, or facts the provider reported on the way."""

    text: str = ""
    thinking: bool = False  # the model is reasoning (text not part of the answer)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class Turns(Protocol):
    """The scheduler's turns, as chat takes them (``gateway.service.Gateway.turn``): an answer
    holds its model's turn while it is written, like a gateway request, so the model is
    counted in flight and never evicted mid-answer. ``say`` tells the user what it waits for;
    a refusal (a full queue, a model too large for the budget) raises ``ChatError``."""

    def turn(
        self, target: Target, say: Callable[[str], None]
    ) -> AbstractAsyncContextManager[None]: ...
