"""Conversations and streamed answers (SPEC §6, §8)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from modelyard.api.deps import ServicesDep
from modelyard.api.policy import policy
from modelyard.chat.answer import Generation
from modelyard.chat.answer_events import AnswerFrame
from modelyard.chat.types import ChatOptions
from modelyard.chat.views import Conversation, ConversationSummary, Stopped
from modelyard.errors import InvalidInput

# Conversations are what their users wrote: reading them needs the inference scope too.
router = APIRouter(tags=["chat"], dependencies=[policy(read="inference", write="inference")])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_NAME = Field(default=None, min_length=1, max_length=512)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=32)
    model: str = Field(min_length=1, max_length=512)
    instance_id: str | None = Field(default=None, min_length=1, max_length=64)
    title: str | None = Field(default=None, max_length=200)
    system: str | None = Field(default=None, max_length=100_000)
    options: ChatOptions | None = None


class ConversationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    system: str | None = Field(default=None, max_length=100_000)
    options: ChatOptions | None = None
    provider: str | None = Field(default=None, min_length=1, max_length=32)
    model: str | None = _NAME
    instance_id: str | None = Field(default=None, min_length=1, max_length=64)


class MessageCreate(BaseModel):
    """A message to answer, or ``regenerate: true`` to answer the last one again."""

    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(default=None, max_length=1_000_000)
    regenerate: bool = False
    model: str | None = _NAME
    provider: str | None = Field(default=None, min_length=1, max_length=32)
    instance_id: str | None = Field(default=None, min_length=1, max_length=64)
    options: ChatOptions | None = None

    @model_validator(mode="after")
    def _content_or_regenerate(self) -> MessageCreate:
        has_content = bool(self.content and self.content.strip())
        if self.regenerate and self.content is not None:
            raise InvalidInput(
                "send either content or regenerate, not both",
                code="invalid_message",
                hint="regenerate answers the last message again; it takes no content.",
            )
        if not self.regenerate and not has_content:
            raise InvalidInput(
                "the message is empty",
                code="empty_message",
                hint="Send some text in content.",
            )
        return self


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]


class EventStream(StreamingResponse):
    """``text/event-stream`` of one answer. However the response ends (finished, or the
    client went away), the generation is stopped if it still runs."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        super().__init__(_frames(generation), media_type="text/event-stream", headers=SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.generation.stop()


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` put in place of their references: an OpenAPI document
    resolves a ``$ref`` from its own root, where pydantic's ``#/$defs/…`` are not."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return dict(resolve(schema))


# The schema of one ``data:`` line of an answer's stream.
ANSWER_FRAME = _inlined(TypeAdapter(AnswerFrame).json_schema())


async def _frames(generation: Generation) -> AsyncIterator[bytes]:
    # One write per batch: a fast model's tokens would otherwise cost a send each.
    async for batch in generation.events():
        yield b"".join(
            b"data: " + json.dumps(event.wire(), ensure_ascii=False).encode() + b"\n\n"
            for event in batch
        )


# The routes answer with each view's wire form, as it is: the response models document it.
@router.post("/api/conversations", status_code=201, response_model=ConversationSummary)
async def create_conversation(body: ConversationCreate, services: ServicesDep) -> JSONResponse:
    created = await services.chat.create(
        body.provider,
        body.model,
        instance_id=body.instance_id,
        title=body.title,
        system=body.system,
        options=body.options,
    )
    return JSONResponse(created.wire(), status_code=201)


@router.get("/api/conversations", response_model=ConversationList)
async def list_conversations(services: ServicesDep) -> JSONResponse:
    """Every conversation (without messages), the most recently active first."""
    listed = await services.chat.conversations()
    return JSONResponse({"conversations": [c.wire() for c in listed]})


@router.get("/api/conversations/{conversation_id}", response_model=Conversation)
async def get_conversation(conversation_id: str, services: ServicesDep) -> JSONResponse:
    return JSONResponse((await services.chat.get(conversation_id)).wire())


@router.patch("/api/conversations/{conversation_id}", response_model=Conversation)
async def update_conversation(
    conversation_id: str, body: ConversationPatch, services: ServicesDep
) -> JSONResponse:
    updated = await services.chat.update(
        conversation_id,
        title=body.title,
        system=body.system,
        options=body.options,
        provider=body.provider,
        model=body.model,
        instance_id=body.instance_id,
    )
    return JSONResponse(updated.wire())


@router.delete("/api/conversations/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: str, services: ServicesDep) -> Response:
    await services.chat.delete(conversation_id)
    return Response(status_code=204)


@router.post(
    "/api/conversations/{conversation_id}/messages",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": ANSWER_FRAME}},
            "description": "The answer's events: each `data:` line one JSON object of this schema",
        }
    },
)
async def send_message(
    conversation_id: str, body: MessageCreate, services: ServicesDep
) -> StreamingResponse:
    """Stream the answer: ``start``, ``status``, ``token`` events, then ``done`` or ``error``."""
    generation = await services.chat.send(
        conversation_id,
        None if body.regenerate else body.content,
        model=body.model,
        provider=body.provider,
        instance_id=body.instance_id,
        options=body.options,
    )
    return EventStream(generation)


@router.post("/api/conversations/{conversation_id}/stop", response_model=Stopped)
async def stop_generation(conversation_id: str, services: ServicesDep) -> JSONResponse:
    """Stop the answer being written; it is kept (state ``stopped``) when this returns."""
    await services.chat.get(conversation_id)  # 404 for an unknown conversation
    return JSONResponse((await services.chat.stop(conversation_id)).wire())
