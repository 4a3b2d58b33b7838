"""Servers for the gateway tests: a genuine llama-server, the paced stand-in, and an
OpenAI-compatible server that answers every chat with a tool call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.llama import llama_server
from tests.support.paced_upstream import PacedThread
from tests.support.servers import ServerThread


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[str]:
    """A genuine llama-server running the tiny model: 4 slots, 2048 tokens of context."""
    log = tmp_path_factory.mktemp("llama") / "llama.log"
    with llama_server(tiny_gguf, "-np", "4", ctx_size=2048, log=log) as url:
        yield url


@pytest.fixture
def paced() -> Iterator[PacedThread]:
    """The paced stand-in: a token every 20 ms."""
    with PacedThread(interval=0.02) as server:
        yield server


TOOL_CHUNKS: list[dict[str, Any]] = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me check."}}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
            }
        ]
    },
    {
        "choices": [
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}}
        ]
    },
    {
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]},
            }
        ]
    },
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43}},
]
TOOL_ANSWER: dict[str, Any] = {
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
}


@pytest.fixture
def tool_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible server that always calls ``get_weather`` (as vLLM streams it)."""
    received: list[dict[str, Any]] = []

    async def completions(request: Request) -> Response:
        body = await request.json()
        received.append(body)
        if not body.get("stream"):
            return JSONResponse(TOOL_ANSWER)
        chunks = TOOL_CHUNKS if body.get("stream_options", {}).get("include_usage") else []

        async def events() -> Any:
            for chunk in chunks or TOOL_CHUNKS[:-1]:
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "tool-model", "object": "model"}]})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models),
        ]
    )
    with ServerThread(app) as server:
        yield server.url, received
