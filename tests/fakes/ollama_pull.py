"""The ``/api/pull`` progress stream of the Ollama stand-in (PROTOCOLS §1.3, §1.4).

``pull_events`` yields the objects Ollama streams, in order:

1. ``{"status":"pulling manifest"}``; for a name the registry does not know, then
   ``{"error":"pull model manifest: file does not exist"}`` and nothing else.
2. For each layer in manifest order, then the config blob, one blob at a time:
   * already on disk: one line with ``total`` and ``completed`` equal;
   * a blob no bigger than one chunk finishes within its first tick and gets **no line**;
   * a bigger blob: a first line right away (``completed`` left out while 0, or the bytes
     kept from an interrupted pull), then one line per tick while it is incomplete. There
     is no final line with ``completed == total``.
3. ``verifying sha256 digest``, ``writing manifest`` (the model is in the table from here),
   ``removing unused layers`` when a re-pull replaced blobs, then ``success``.

A scripted ``PullFailure`` ends the stream with ``{"error": message}`` once that many bytes
were downloaded. Bytes already fetched are kept (``state.partials``), so a later pull resumes;
a client that disconnects simply stops the generator at its next tick, keeping bytes too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tests.fakes.ollama_state import Layer, OllamaState, model_from_registry

NOT_FOUND = "pull model manifest: file does not exist"


def progress_line(layer: Layer, completed: int) -> dict[str, Any]:
    """A per-layer line: ``completed`` (like ``total``) is left out when zero."""
    line: dict[str, Any] = {"status": f"pulling {layer.digest[7:19]}", "digest": layer.digest}
    if layer.size:
        line["total"] = layer.size
    if completed:
        line["completed"] = completed
    return line


class _Budget:
    """Counts bytes fetched in this pull against the scripted failure point."""

    def __init__(self, state: OllamaState) -> None:
        self.failure = state.take_pull_failure()
        self.fetched = 0

    def spend(self, count: int) -> str | None:
        """Record fetched bytes; return the failure message once the budget is exceeded."""
        self.fetched += count
        if self.failure is not None and self.fetched >= self.failure.after_bytes:
            return self.failure.message
        return None


async def _fetch(
    state: OllamaState, layer: Layer, budget: _Budget
) -> AsyncIterator[dict[str, Any]]:
    """Progress lines of one blob download; an ``error`` object ends it early."""
    chunk = max(state.pull_chunk_bytes, 1)
    with state.lock:
        completed = state.partials.get(layer.digest, 0)
    first = True
    while completed < layer.size:
        if not (first and layer.size - completed <= chunk):
            yield progress_line(layer, completed)
        first = False
        await asyncio.sleep(state.pull_tick)
        step = min(chunk, layer.size - completed)
        completed += step
        with state.lock:
            state.partials[layer.digest] = completed
        message = budget.spend(step)
        if message is not None:
            yield {"error": message}
            return


async def pull_events(state: OllamaState, name: str) -> AsyncIterator[dict[str, Any]]:
    """The objects of one pull stream, for a valid model name."""
    yield {"status": "pulling manifest"}
    entry = state.registry_model(name)
    if entry is None:
        yield {"error": NOT_FOUND}
        return
    budget = _Budget(state)
    for layer in [*entry.layers, entry.config]:
        with state.lock:
            on_disk = (
                layer.digest in state.blobs() or state.partials.get(layer.digest) == layer.size
            )
        if on_disk:
            yield progress_line(layer, layer.size)
            continue
        async for line in _fetch(state, layer, budget):
            yield line
            if "error" in line:
                return
    yield {"status": "verifying sha256 digest"}
    previous = state.model(entry.name)
    model = model_from_registry(entry, state.now())
    with state.lock:
        state.install(model)
        for digest in model.blob_digests():
            state.partials.pop(digest, None)
    yield {"status": "writing manifest"}
    if previous is not None and previous.blob_digests() - model.blob_digests():
        yield {"status": "removing unused layers"}
    yield {"status": "success"}
