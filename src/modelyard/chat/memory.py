"""What answering a conversation needs (its current model, system prompt, options and
messages), kept in memory between messages so that sending one does not wait for a database
read on its way to the first token.

The store stays the truth: an entry is filled from it, kept up to date by the writes that
answering makes (the turn, then the finished answer), and dropped by any other change
(rename, model switch, delete). A read that raced such a change is not kept (``epoch``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from modelyard.chat.types import ChatOptions
from modelyard.store.tables import ConversationRow

SIZE = 256


@dataclass(frozen=True)
class Said:
    """One message, as far as answering is concerned."""

    id: str
    seq: int
    role: str
    content: str
    state: str


@dataclass(frozen=True)
class Current:
    """A conversation's model and title, as a turn leaves them."""

    provider: str
    instance_id: str
    model: str
    title: str


@dataclass(frozen=True)
class Recall:
    """One conversation, as far as answering is concerned."""

    id: str
    provider: str
    instance_id: str
    model: str
    title: str
    system: str
    options: ChatOptions = field(default_factory=ChatOptions)
    messages: tuple[Said, ...] = ()

    @classmethod
    def of(cls, row: ConversationRow, *, new: bool = False) -> Recall:
        """From a row whose messages are loaded (``new``: a conversation just created)."""
        messages = () if new else row.messages
        said = tuple(Said(m.id, m.seq, m.role, m.content, m.state) for m in messages)
        return cls(
            row.id, row.provider, row.instance_id, row.model, row.title, row.system,
            ChatOptions.kept(row.options), said,
        )  # fmt: skip


class Memory:
    """A bounded, thread-safe map of conversation id → Recall (least recently used go)."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Recall] = OrderedDict()
        self._epochs: dict[str, int] = {}

    def epoch(self, conversation_id: str) -> int:
        """Take this before reading the store; ``put`` refuses if it changed meanwhile."""
        with self._lock:
            return self._epochs.get(conversation_id, 0)

    def get(self, conversation_id: str) -> Recall | None:
        with self._lock:
            found = self._items.get(conversation_id)
            if found is not None:
                self._items.move_to_end(conversation_id)
            return found

    def put(self, recall: Recall, epoch: int) -> None:
        with self._lock:
            if self._epochs.get(recall.id, 0) != epoch:
                return
            self._items[recall.id] = recall
            self._items.move_to_end(recall.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget(self, conversation_id: str) -> None:
        with self._lock:
            self._items.pop(conversation_id, None)
            self._epochs[conversation_id] = self._epochs.get(conversation_id, 0) + 1

    def clear(self) -> None:
        with self._lock:
            for conversation_id in self._items:
                self._epochs[conversation_id] = self._epochs.get(conversation_id, 0) + 1
            self._items.clear()

    def turn(
        self,
        conversation_id: str,
        drop: list[str],
        added: list[Said],
        current: Current,
    ) -> None:
        """A turn was stored: answers dropped, messages added, the current model changed."""
        with self._lock:
            found = self._items.get(conversation_id)
            if found is None:
                return
            kept = tuple(m for m in found.messages if m.id not in drop)
            self._items[conversation_id] = replace(
                found,
                messages=kept + tuple(added),
                provider=current.provider,
                instance_id=current.instance_id,
                model=current.model,
                title=current.title,
            )

    def finished(self, conversation_id: str, message_id: str, content: str, state: str) -> None:
        """An answer was stored with its final text and state."""
        with self._lock:
            found = self._items.get(conversation_id)
            if found is None:
                return
            messages = tuple(
                replace(m, content=content, state=state) if m.id == message_id else m
                for m in found.messages
            )
            self._items[conversation_id] = replace(found, messages=messages)
