"""What the scheduler keeps per model, and the ticket a request holds.

``ModelRecord`` is one model's state, changed only by the ``Scheduler`` (its one owner).
``Ticket`` is one request's turn: it waits (``ready``), serves, and is released by ``close``
whatever happened — so an in-flight count cannot leak, even for a cancelled request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol

from modelyard.errors import Conflict, ModelyardError, Unavailable
from modelyard.gateway.scheduling import (
    Eviction,
    K,
    ModelPolicy,
    ModelState,
    ModelView,
    SchedulerSettings,
    WaitView,
)


class TicketOwner(Protocol[K]):
    """The scheduler, as a ticket sees it."""

    settings: SchedulerSettings

    def retry_after(self, model: ModelRecord[K]) -> float: ...

    def release_ticket(self, ticket: Ticket[K], model: ModelRecord[K], waiter: Waiter) -> None: ...


@dataclass(eq=False)
class Waiter:
    future: asyncio.Future[None]
    seq: int  # arrival order across every model: loads start first come, first served
    granted: bool = False


@dataclass(eq=False)
class ModelRecord(Generic[K]):
    key: K
    name: str
    policy: ModelPolicy
    estimate: int
    state: ModelState = ModelState.UNLOADED
    in_flight: int = 0
    queue: deque[Waiter] = field(default_factory=deque)  # requests waiting for a turn
    holds: deque[Waiter] = field(default_factory=deque)  # explicit loads waiting
    progress: float = 0.0
    loaded_at: float | None = None  # monotonic
    last_used: float = 0.0  # monotonic, end of the last request (or the load)
    kept: bool = False  # explicitly loaded: no idle unload until it is used or unloaded
    unload_reason: str | None = None  # an unload is due once nothing is in flight
    unload_waiters: list[asyncio.Future[None]] = field(default_factory=list)
    pending: Eviction | None = None  # why the unload under way happens
    suspect: bool = False  # a request saw the backend fail; a check is running
    task: asyncio.Task[None] | None = None  # the load, unload or check in progress
    timer: asyncio.TimerHandle | None = None  # the idle unload
    ttl_due: float | None = None  # monotonic, when ``timer`` fires
    service_s: float = 1.0  # moving average of how long a request holds its turn
    last_eviction: Eviction | None = None
    last_error: str | None = None

    @property
    def committed(self) -> bool:
        """Whether the model's memory counts against the budget."""
        return self.state is not ModelState.UNLOADED

    def idle(self) -> bool:
        """Nothing in flight and nobody waiting."""
        return not self.in_flight and not self.queue and not self.holds

    def first_arrival(self) -> int:
        """The arrival number of its longest-waiting request or explicit load."""
        return min(line[0].seq for line in (self.queue, self.holds) if line)

    def settle_unload_waiters(self, failure: ModelyardError | None = None) -> None:
        """Tell those waiting for an unload that it is done (it must be), or ``failure``."""
        if failure is None and self.state is not ModelState.UNLOADED:
            return
        for future in self.unload_waiters:
            if not future.done():
                if failure is None:
                    future.set_result(None)
                else:
                    future.set_exception(failure)
        self.unload_waiters.clear()

    def fail_loads(self, error: ModelyardError) -> None:
        """Fail the requests and explicit loads waiting for this model to load."""
        for line in (self.queue, self.holds):
            while line:
                future = line.popleft().future
                if not future.done():
                    future.set_exception(error)

    def fail_waiters(self, error: ModelyardError) -> None:
        """Fail every request, explicit load and unload waiting on this model."""
        futures = [w.future for w in (*self.queue, *self.holds)] + self.unload_waiters
        for future in futures:
            if not future.done():
                future.set_exception(error)

    def view(self) -> ModelView:
        """The record as data for the API, events and metrics."""
        now_mono, now = time.monotonic(), time.time()

        def wall(moment: float | None) -> float | None:
            return None if moment is None else now - (now_mono - moment)

        return ModelView(
            key=self.name,
            state=self.state,
            in_flight=self.in_flight,
            queued=len(self.queue),
            estimate_bytes=self.estimate,
            load_progress=self.progress if self.state is ModelState.LOADING else None,
            ttl_left_s=None if self.ttl_due is None else max(0.0, self.ttl_due - now_mono),
            pinned=self.policy.pinned,
            loaded_at=wall(self.loaded_at),
            last_used_at=wall(self.last_used) if self.last_used else None,
            last_eviction=self.last_eviction,
            last_error=self.last_error,
        )


class Ticket(Generic[K]):
    """One request's turn at a model: waiting, then serving; closing it releases it."""

    def __init__(self, scheduler: TicketOwner[K], model: ModelRecord[K], waiter: Waiter) -> None:
        self._scheduler = scheduler
        self._model = model
        self._waiter = waiter
        self.granted_at: float | None = None  # monotonic, when ``ready`` returned
        self.failed = False
        self._closed = False

    @property
    def granted(self) -> bool:
        return self._waiter.granted

    def view(self) -> WaitView:
        """The model's state and this request's place in its queue."""
        model = self._model
        position = next((i + 1 for i, w in enumerate(model.queue) if w is self._waiter), 0)
        progress = model.progress if model.state is ModelState.LOADING else None
        return WaitView(model.name, model.state, progress, position)

    async def ready(
        self,
        heartbeat: Callable[[WaitView], Awaitable[object]] | None = None,
        interval_s: float = 0.5,
    ) -> None:
        """Wait for this request's turn, calling ``heartbeat`` every ``interval_s`` while it
        waits; raise 503 ``queue_timeout`` past the queue timeout, or the load's error."""
        timeout = self._scheduler.settings.queue_timeout_s
        deadline = time.monotonic() + timeout
        future = self._waiter.future
        while not future.done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable(
                    f"{self._model.name} was not ready within {timeout:g} s",
                    code="queue_timeout",
                    hint="The model is busy or loading; retry after the Retry-After seconds.",
                    retry_after_s=self._scheduler.retry_after(self._model),
                )
            await asyncio.wait((future,), timeout=min(interval_s, left))
            if not future.done() and heartbeat is not None:
                await heartbeat(self.view())
        future.result()
        self.granted_at = time.monotonic()

    def backend_failed(self) -> None:
        """The backend broke off this request: check it, and restart it if it died."""
        self.failed = True

    def close(self) -> None:
        """Release the turn (or leave the queue). Idempotent; never awaits."""
        if not self._closed:
            self._closed = True
            self._scheduler.release_ticket(self, self._model, self._waiter)

    def __enter__(self) -> Ticket[K]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stopped_while_loading(name: str) -> Conflict:
    """What an explicit load is told when its model is unloaded before it has loaded."""
    return Conflict(
        f"{name} was stopped before it had loaded",
        code="stopped_while_loading",
        hint="Start it again when you want it.",
    )


def discard(future: asyncio.Future[None]) -> None:
    """Let go of a waiter's future: cancel it, or consume the error nobody will read."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()
