"""The scheduler's calls to its backend, each bounded by its deadline and reduced to what the
scheduler decides on: a load's outcome, an unload's error, a liveness verdict.

They run as tasks while the scheduler goes on deciding; whatever a backend raises ends here
as data (only a cancellation passes through), so the scheduler's handlers never see an
exception of a runtime's own kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.errors import ModelyardError, UpstreamError
from modelyard.gateway.scheduling import Backend, K


@dataclass(frozen=True)
class LoadOutcome:
    """How a load ended: ``error`` (None: loaded), the backend's own error when the client
    can act on it (507, 409…), or ``cancelled`` (nobody waited any more)."""

    error: str | None = None
    reason: ModelyardError | None = None
    cancelled: bool = False

    def failure(self, name: str) -> ModelyardError:
        """What the load's waiters are told."""
        return self.reason or UpstreamError(
            f"{name} could not be loaded: {self.error}",
            code="load_failed",
            hint="See the model server's log; the next request tries again.",
        )


async def call_load(
    backend: Backend[K], key: K, timeout_s: float, progress: Callable[[float], None]
) -> LoadOutcome:
    try:
        async with asyncio.timeout(timeout_s):
            await backend.load(key, progress)
    except asyncio.CancelledError:
        return LoadOutcome(cancelled=True)
    except TimeoutError:
        return LoadOutcome(f"the load did not finish within {timeout_s:g} s")
    except ModelyardError as exc:  # one the client can act on: kept as it is
        return LoadOutcome(exc.detail, exc)
    except Exception as exc:  # a backend's failure, whatever its type, fails this load
        return LoadOutcome(str(exc) or type(exc).__name__)
    return LoadOutcome()


async def call_unload(backend: Backend[K], key: K, timeout_s: float) -> str | None:
    """None once unloaded, else why not. A cancellation (shutting down) passes through."""
    try:
        async with asyncio.timeout(timeout_s):
            await backend.unload(key)
    except TimeoutError:
        return f"the unload did not finish within {timeout_s:g} s"
    except Exception as exc:  # a backend's failure, whatever its type
        return str(exc) or type(exc).__name__
    return None


async def call_alive(backend: Backend[K], key: K, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            return await backend.is_alive(key)
    except Exception:  # an unreachable backend is not alive
        return False
