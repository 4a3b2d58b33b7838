"""Servers for the gateway tests: a genuine llama-server and the paced stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.llama import llama_server
from tests.support.paced_upstream import PacedThread


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
