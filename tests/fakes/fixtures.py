"""Pytest fixtures that run the stand-in servers on free ports of 127.0.0.1.

Each fixture is function-scoped, starts a real uvicorn server in a thread and stops it when
the test ends. It yields a ``FakeServer`` with ``.url`` (``http://127.0.0.1:<port>``),
``.port``, ``.state`` (the scripting object: change it at any time) and ``.log``.

Load them with ``pytest_plugins = ["tests.fakes.fixtures"]`` in the root conftest.py. For
more than one server of a kind in a test, use ``serve(app, state)`` as a context manager.

The Ollama fixture paces pulls at 5 ms per tick (Ollama's own 60 ms would slow tests down);
set ``state.pull_tick`` to change it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import pytest

from tests.fakes.anthropic import AnthropicState, create_anthropic_app
from tests.fakes.common import RequestLog
from tests.fakes.lmstudio import LMStudioState, create_lmstudio_app
from tests.fakes.ollama import OllamaState, create_ollama_app
from tests.fakes.openai_compat import OpenAIState, create_openai_app
from tests.fakes.plain_http import PlainHttpState, create_plain_http_app
from tests.support.servers import ServerThread


class _HasLog(Protocol):
    log: RequestLog


StateT = TypeVar("StateT", bound=_HasLog)


@dataclass
class FakeServer(Generic[StateT]):
    """A running stand-in: where it listens and how to script it."""

    url: str
    port: int
    state: StateT

    @property
    def log(self) -> RequestLog:
        """The requests the server received."""
        return self.state.log


@contextmanager
def serve(app: Any, state: StateT) -> Iterator[FakeServer[StateT]]:
    """Run ``app`` on a free port for the duration of the ``with`` block."""
    thread = ServerThread(app, server_header=False)
    thread.start()
    try:
        yield FakeServer(url=thread.url, port=thread.port, state=state)
    finally:
        thread.stop()


@pytest.fixture
def ollama_server() -> Iterator[FakeServer[OllamaState]]:
    """An Ollama stand-in with no models (pull tick 5 ms)."""
    state = OllamaState(pull_tick=0.005)
    with serve(create_ollama_app(state), state) as server:
        yield server


@pytest.fixture
def lmstudio_server() -> Iterator[FakeServer[LMStudioState]]:
    """An LM Studio stand-in with no models."""
    state = LMStudioState()
    with serve(create_lmstudio_app(state), state) as server:
        yield server


@pytest.fixture
def openai_server() -> Iterator[FakeServer[OpenAIState]]:
    """A generic OpenAI-compatible server with no API key required and no models."""
    state = OpenAIState()
    with serve(create_openai_app(state), state) as server:
        yield server


@pytest.fixture
def anthropic_server() -> Iterator[FakeServer[AnthropicState]]:
    """An Anthropic API stand-in accepting the key ``state.api_key``."""
    state = AnthropicState()
    with serve(create_anthropic_app(state), state) as server:
        yield server


@pytest.fixture
def plain_http_server() -> Iterator[FakeServer[PlainHttpState]]:
    """An unrelated web site: ``GET /`` is HTML, everything else a 404 page."""
    state = PlainHttpState()
    with serve(create_plain_http_app(state), state) as server:
        yield server
