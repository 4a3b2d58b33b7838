"""Conversations and messages in the store (``views`` says how the API shows them)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, joinedload

from modelyard.chat.memory import Current, Memory, Recall, Said
from modelyard.chat.types import ChatOptions, Turn
from modelyard.chat.views import (
    AnswerColumns,
    Conversation,
    ConversationColumns,
    ConversationSummary,
    NewMessage,
)
from modelyard.clock import utcnow
from modelyard.errors import Conflict, NotFound
from modelyard.store.db import Database
from modelyard.store.tables import ConversationRow, MessageRow

DEFAULT_TITLE = "New chat"
TITLE_LENGTH = 60
STREAMING = "streaming"

# (provider, instance_id, model) of the conversation → the ones an answer uses
Pick = Callable[[str, str, str], tuple[str, str, str]]


def new_id() -> str:
    return uuid.uuid4().hex


def title_from(content: str) -> str:
    """A title from the first line of the first message."""
    line = " ".join(content.strip().split("\n", 1)[0].split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


@dataclass(frozen=True)
class TurnWrites:
    """What starting an answer stores: answers dropped (regenerate), the user's message, the
    streaming answer and the conversation's new current model and title."""

    conversation_id: str
    drop: list[str]
    user: NewMessage | None
    answer: NewMessage
    conversation: Current
    at: datetime  # also the conversation's updated_at


@dataclass(frozen=True)
class TurnStart:
    """What a new answer needs: its id, the conversation's system prompt, options and history,
    and the writes that record it."""

    conversation_id: str
    message_id: str
    system: str
    options: ChatOptions
    history: list[Turn]
    title: str
    writes: TurnWrites


class Message(Protocol):
    """What deciding on a turn needs of a message (a MessageRow, or one in memory)."""

    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def state(self) -> str: ...


def history_of(messages: Sequence[Message]) -> list[Turn]:
    """The turns to send: failed or empty answers left out, same-role neighbours merged
    (strict chat templates require user and assistant to alternate).

    A user message whose answer failed is left out too: the upstream refused it or broke
    down on it (a message too long for the context, say), and sending it again with every
    later message would fail them all. Regenerating drops the failed answer first, so the
    message is sent again then."""
    turns: list[Turn] = []
    for i, m in enumerate(messages):
        if m.role not in ("user", "assistant") or not m.content.strip():
            continue
        if m.role == "assistant" and m.state in ("error", STREAMING):
            continue
        if m.role == "user" and _answer_failed(messages, i):
            continue
        if turns and turns[-1].role == m.role:
            turns[-1] = Turn(m.role, f"{turns[-1].content}\n\n{m.content}")
        else:
            turns.append(Turn(m.role, m.content))
    return turns


def _answer_failed(messages: Sequence[Message], index: int) -> bool:
    """Whether the user message at ``index`` was answered, and the answer failed."""
    for m in messages[index + 1 :]:
        if m.role == "assistant":
            return m.state == "error"
        if m.role == "user":
            return False
    return False


class ConversationStore:
    """Every read and write of conversations. Methods are synchronous (run them in a thread;
    ``prepare_turn`` of a conversation in ``memory`` reads nothing and may run in the loop)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.memory = Memory()

    def create(self, values: ConversationColumns) -> ConversationSummary:
        now = utcnow()
        row = ConversationRow(id=new_id(), created_at=now, updated_at=now, **values)
        epoch = self.memory.epoch(row.id)
        with self.db.session() as s:
            s.add(row)
            s.flush()
            created = ConversationSummary.of(row, 0)
            recall = Recall.of(row, new=True)
        self.memory.put(recall, epoch)
        return created

    def all(self) -> list[ConversationSummary]:
        """Every conversation, the most recently active first, without messages."""
        counts = (
            select(MessageRow.conversation_id, func.count().label("n"))
            .group_by(MessageRow.conversation_id)
            .subquery()
        )
        query = (
            select(ConversationRow, counts.c.n)
            .outerjoin(counts, counts.c.conversation_id == ConversationRow.id)
            .order_by(ConversationRow.updated_at.desc(), ConversationRow.created_at.desc())
        )
        with self.db.session() as s:
            return [ConversationSummary.of(row, n or 0) for row, n in s.execute(query)]

    def get(self, conversation_id: str) -> Conversation:
        with self.db.session() as s:
            return Conversation.loaded(self._row(s, conversation_id, messages=True))

    def update(self, conversation_id: str, changes: ConversationColumns) -> Conversation:
        self.memory.forget(conversation_id)
        with self.db.session() as s:
            row = self._row(s, conversation_id)
            for name, value in changes.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            s.flush()
            return Conversation.loaded(row)

    def delete(self, conversation_id: str) -> None:
        self.memory.forget(conversation_id)
        with self.db.session() as s:
            s.delete(self._row(s, conversation_id))

    def prepare_turn(self, conversation_id: str, content: str | None, pick: Pick) -> TurnStart:
        """Plan a new answer without writing: the user's message (or, for ``content`` None,
        regenerate: the answers after the last user message go), then a streaming answer.
        ``pick`` maps the conversation's (provider, instance, model) to the ones the answer
        uses. ``write_turn`` stores the plan (while the model already works on it)."""
        recall = self._recall(conversation_id)
        messages: list[Said] = list(recall.messages)
        drop: list[str] = []
        title = recall.title
        if content is None:
            kept = self._last_question(messages)
            drop = [m.id for m in messages[len(kept) :]]
            messages = kept
        elif title == DEFAULT_TITLE and not any(m.role == "user" for m in messages):
            title = title_from(content) or DEFAULT_TITLE
        provider, instance_id, model = pick(recall.provider, recall.instance_id, recall.model)
        seq = max((m.seq for m in messages), default=0) + 1
        now = utcnow()
        user: NewMessage | None = None
        if content is not None:
            user = NewMessage(new_id(), seq, "user", content, "complete")
            messages.append(Said(user.id, seq, "user", content, "complete"))
        answer = NewMessage(
            new_id(), seq + (user is not None), "assistant", "", STREAMING, provider,
            instance_id, model,
        )  # fmt: skip
        current = Current(provider, instance_id, model, title)
        writes = TurnWrites(recall.id, drop, user, answer, current, now)
        return TurnStart(
            recall.id, answer.id, recall.system, recall.options, history_of(messages),
            title, writes,
        )  # fmt: skip

    def _recall(self, conversation_id: str) -> Recall:
        """The conversation from memory, else from the store (and then remembered)."""
        found = self.memory.get(conversation_id)
        if found is not None:
            return found
        epoch = self.memory.epoch(conversation_id)
        with self.db.session() as s:
            found = Recall.of(self._row(s, conversation_id, messages=True))
        self.memory.put(found, epoch)
        return found

    def write_turn(self, writes: TurnWrites) -> None:
        """Store a planned turn; 404 when the conversation was deleted meanwhile."""
        added = [v for v in (writes.user, writes.answer) if v is not None]
        with self.db.session() as s:
            row = self._row(s, writes.conversation_id)
            if writes.drop:
                s.execute(delete(MessageRow).where(MessageRow.id.in_(writes.drop)))
            for m in added:
                s.add(
                    MessageRow(
                        id=m.id, conversation_id=row.id, seq=m.seq, role=m.role,
                        content=m.content, state=m.state, provider=m.provider,
                        instance_id=m.instance_id, model=m.model, created_at=writes.at,
                    )
                )  # fmt: skip
            current = writes.conversation
            row.provider, row.instance_id = current.provider, current.instance_id
            row.model, row.title, row.updated_at = current.model, current.title, writes.at
        said = [Said(m.id, m.seq, m.role, m.content, m.state) for m in added]
        self.memory.turn(writes.conversation_id, writes.drop, said, writes.conversation)

    def finish(self, message_id: str, values: AnswerColumns) -> None:
        """Store how an answer ended (content, state, timings, counts)."""
        with self.db.session() as s:
            row = s.get(MessageRow, message_id)
            if row is None:  # the conversation was deleted while it streamed
                return
            for name, value in values.items():
                setattr(row, name, value)
        self.memory.finished(row.conversation_id, message_id, row.content, row.state)

    def interrupt_leftovers(self) -> int:
        """Answers still marked streaming (modelyard stopped mid-answer) become stopped."""
        self.memory.clear()
        with self.db.session() as s:
            rows = s.scalars(select(MessageRow).where(MessageRow.state == STREAMING)).all()
            for row in rows:
                row.state = "stopped"
                row.error = "modelyard stopped while this answer was being written"
            return len(rows)

    @staticmethod
    def _row(s: Session, conversation_id: str, *, messages: bool = False) -> ConversationRow:
        options = [joinedload(ConversationRow.messages)] if messages else []
        row = s.get(ConversationRow, conversation_id, options=options)
        if row is None:
            raise NotFound(
                f"there is no conversation {conversation_id!r}",
                code="conversation_not_found",
                hint="GET /api/conversations lists them.",
            )
        return row

    @staticmethod
    def _last_question(messages: list[Said]) -> list[Said]:
        """The messages up to the last user message (what regenerating answers again)."""
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
        if last_user is None:
            raise Conflict(
                "there is no message to answer again",
                code="nothing_to_regenerate",
                hint="Send a message first.",
            )
        return messages[: last_user + 1]
