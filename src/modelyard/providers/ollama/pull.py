"""An Ollama pull: ``/api/pull`` through the official client (PROTOCOLS §1.3, §2).

Ollama fetches the layers one after another and reports each with
``{"status": "pulling <12hex>", "digest", "total", "completed"}`` lines on a 60 ms ticker,
then ``verifying sha256 digest``, ``writing manifest`` and ``success``; the lines are folded
into a ``LayerTracker``. A ``{"error": ...}`` line in the stream (``ResponseError`` with status
-1) fails the pull with that message. Closing the stream (pause, cancel) leaves Ollama's
partial files for next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing
from typing import Any, cast

import httpx
import ollama

from modelyard.errors import PullError
from modelyard.providers.pull import LayerTracker

_LAYER_STATUS = "pulling "
_DONE = "success"


def feed(
    tracker: LayerTracker,
    status: str | None,
    digest: str | None,
    total: int | None,
    completed: int | None,
) -> None:
    """Take one line of the stream."""
    status = status or ""
    if digest and status.startswith(_LAYER_STATUS):
        tracker.layer(digest, total, completed)
    else:
        tracker.stage(verifying=status.startswith("verifying"))
    tracker.said(status)


def pull_client(base_url: str, api_key: str, connect_timeout_s: float) -> ollama.AsyncClient:
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
                    raise PullError(detail, code="stalled", retryable=True) from exc
                before = tracker.status
                feed(tracker, line.status, line.digest, line.total, line.completed)
                if tracker.status != before:
                    log(f"status: {tracker.status}")
                on_update()
                if line.status == _DONE:
                    return
    except ollama.ResponseError as exc:
        raise _response_error(exc) from exc
    except (httpx.TransportError, ConnectionError) as exc:
        raise PullError(
            f"Ollama cannot be reached: {exc}", code="connection_error", retryable=True
        ) from exc
    raise PullError("the pull stream ended before success", code="connection_error", retryable=True)


def _response_error(exc: ollama.ResponseError) -> PullError:
    """Ollama's error, as it said it; only server errors (5xx) are worth another attempt."""
    status = exc.status_code
    if status == -1:  # an {"error": ...} line in the middle of the stream
        return PullError(exc.error, code="pull_failed", retryable=False)
    if status == 400:
        return PullError(exc.error, code="invalid_model_name", retryable=False)
    return PullError(
        f"Ollama answered HTTP {status}: {exc.error}",
        code="upstream_error",
        retryable=status >= 500,
    )
