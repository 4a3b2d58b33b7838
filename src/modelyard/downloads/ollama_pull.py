"""The Ollama registry source: ``/api/pull`` through the official client (PROTOCOLS §1.3, §2).

Ollama fetches the layers one after another and reports each with
``{"status": "pulling <12hex>", "digest", "total", "completed"}`` lines, but sends no final
line for a finished layer and none at all for a tiny one. So a layer counts as done when a
line for another layer or a later status arrives, progress is the byte sum over the layers
seen, and it never goes backwards (Ollama's own counter can drop when a part is retried).
A ``{"error": ...}`` line in the stream (``ResponseError`` with status -1) fails the pull with
that message. Closing the stream (pause, cancel) leaves Ollama's partial files for next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

import httpx
import ollama

_LAYER_STATUS = "pulling "
_DONE = "success"


class PullError(Exception):
    """A pull that ended without success; ``retryable`` says whether to try again."""

    def __init__(self, code: str, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retryable = retryable


@dataclass
class _Layer:
    total: int = 0
    completed: int = 0


class LayerTracker:
    """Folds the pull stream's lines into byte totals, layer counts and the current status.

    ``floor`` and ``total_floor`` are what an earlier run of the same pull had reached: Ollama
    resumes from its partial files and reports the same layers again, so the numbers shown
    start there instead of at zero.
    """

    def __init__(self, floor: int = 0, total_floor: int = 0) -> None:
        self._layers: dict[str, _Layer] = {}
        self._current: str | None = None
        self._floor = floor
        self._total_floor = total_floor
        self.downloaded = 0
        self.status: str | None = None
        self.verifying = False
        self._recount()

    @property
    def total(self) -> int | None:
        """Bytes of every layer seen so far (later layers add to it)."""
        seen = sum(layer.total for layer in self._layers.values())
        return max(seen, self._total_floor) or None

    @property
    def total_layers(self) -> int:
        return len(self._layers)

    @property
    def current_layer(self) -> int:
        """1-based position of the layer being pulled (the last one once all are done)."""
        if self._current is None:
            return len(self._layers)
        return list(self._layers).index(self._current) + 1

    def feed(
        self, status: str | None, digest: str | None, total: int | None, completed: int | None
    ) -> None:
        """Take one line of the stream."""
        status = status or ""
        if digest and status.startswith(_LAYER_STATUS):
            if digest != self._current:
                self._finish_current()
                self._current = digest
            layer = self._layers.setdefault(digest, _Layer())
            layer.total = max(layer.total, total or 0)
            layer.completed = max(layer.completed, min(completed or 0, layer.total))
        else:
            self._finish_current()
            self.verifying = self.verifying or status.startswith("verifying")
        self.status = status or self.status
        self._recount()

    def _finish_current(self) -> None:
        if self._current is not None:
            layer = self._layers[self._current]
            layer.completed = layer.total
            self._current = None

    def _recount(self) -> None:
        summed = sum(layer.completed for layer in self._layers.values())
        self.downloaded = max(self.downloaded, summed, self._floor)


def ollama_client(base_url: str, api_key: str, connect_timeout_s: float) -> ollama.AsyncClient:
    """A client for one pull: no read timeout (the stall timer watches the stream instead)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    timeout = httpx.Timeout(None, connect=connect_timeout_s)
    return ollama.AsyncClient(host=base_url, timeout=timeout, headers=headers)


async def pull(
    client: ollama.AsyncClient,
    name: str,
    tracker: LayerTracker,
    *,
    on_update: Callable[[], None],
    log: Callable[[str], None],
    stall_timeout_s: float,
) -> None:
    """Pull ``name`` to the end of its stream; raises PullError unless it ends in success."""
    log(f"POST /api/pull {name}")
    try:
        stream = await client.pull(name, stream=True)
        async with aclosing(cast(Any, stream)) as lines:
            while True:
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                    # (pause, cancel) that arrives just as a line does.
                    async with asyncio.timeout(stall_timeout_s):
                        line = await anext(lines)
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    detail = f"Ollama sent nothing for {stall_timeout_s:.0f} s"
                    raise PullError("stalled", detail, retryable=True) from exc
                before = tracker.status
                tracker.feed(line.status, line.digest, line.total, line.completed)
                if tracker.status != before:
                    log(f"status: {tracker.status}")
                on_update()
                if line.status == _DONE:
                    return
    except ollama.ResponseError as exc:
        raise _response_error(exc) from exc
    except (httpx.TransportError, ConnectionError) as exc:
        raise PullError(
            "connection_error", f"Ollama cannot be reached: {exc}", retryable=True
        ) from exc
    raise PullError("connection_error", "the pull stream ended before success", retryable=True)


def _response_error(exc: ollama.ResponseError) -> PullError:
    """Ollama's error, as it said it; only server errors (5xx) are worth another attempt."""
    status = exc.status_code
    if status == -1:  # an {"error": ...} line in the middle of the stream
        return PullError("pull_failed", exc.error, retryable=False)
    if status == 400:
        return PullError("invalid_model_name", exc.error, retryable=False)
    return PullError(
        "upstream_error", f"Ollama answered HTTP {status}: {exc.error}", retryable=status >= 500
    )
