"""The one owner of what is loaded: FIFO queues, one load per model, admission by memory, LRU
eviction of idle models, TTLs, pins, per-model concurrency.

One owner of state, as in llama-swap's router: every decision is made by ``_drain`` and the
``_on_*`` handlers, which are plain (non-async) methods of this object called on its event
loop. asyncio runs them to the end without interruption, so a decision always sees the
current state and no other code can slip in between the check and the change — the event
loop is the lock. The slow parts (loads, unloads, liveness checks) run as tasks that report
back through ``_on_*``, which call ``_drain`` again. Call every method from the loop the
scheduler runs on.

A request holds a ``Ticket`` (``with scheduler.request(key) as ticket``): ``await
ticket.ready()`` waits for its turn (raising 429/503/507-style errors the client can act on),
and leaving the block releases it — cancelled or not, so an in-flight count cannot leak.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Generic

from modelyard.errors import (
    InsufficientResources,
    TooManyRequests,
    Unavailable,
    UpstreamError,
)
from modelyard.gateway.admission import decide
from modelyard.gateway.backend_calls import LoadOutcome, call_alive, call_load, call_unload
from modelyard.gateway.scheduling import (
    Backend,
    Eviction,
    K,
    ModelPolicy,
    ModelState,
    ModelView,
    SchedulerSettings,
)
from modelyard.gateway.tickets import (
    ModelRecord,
    Ticket,
    Waiter,
    discard,
    stopped_while_loading,
)

log = logging.getLogger("modelyard.gateway")
RETRY_AFTER_MAX_S = 60.0


class Scheduler(Generic[K]):
    """Decides what is loaded, and when each request may use its model."""

    def __init__(
        self,
        backend: Backend[K],
        settings: SchedulerSettings,
        policy_for: Callable[[K], ModelPolicy] = lambda _key: ModelPolicy(),
        on_change: Callable[[ModelView], None] | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self._policy_for = policy_for
        self._on_change = on_change
        self._models: dict[K, ModelRecord[K]] = {}
        self._dirty: set[ModelRecord[K]] = set()
        self._seq = 0
        self._wakeup: asyncio.TimerHandle | None = None
        self._closed = False

    # -- what callers do ----------------------------------------------------------------------

    def request(self, key: K) -> Ticket[K]:
        """A turn at ``key``'s model: granted at once when it is loaded and has a free slot,
        else queued (and a load started if one is needed). Raises 429 ``queue_full`` and
        507 ``model_too_large`` at once rather than letting the request wait in vain."""
        model = self._model(key)
        self._check_fits(model)
        if (
            model.state is ModelState.LOADED
            and not model.queue
            and model.in_flight < model.policy.max_concurrency
            and model.unload_reason is None
            and not model.suspect
        ):
            self._seq += 1
            waiter = Waiter(asyncio.get_running_loop().create_future(), self._seq)
            self._grant(model, waiter)
            self._flush()
            return Ticket(self, model, waiter)
        if len(model.queue) >= model.policy.max_queue:
            raise TooManyRequests(
                f"{model.name} has {len(model.queue)} requests waiting already",
                code="queue_full",
                retry_after_s=self.retry_after(model),
            )
        waiter = self._enqueue(model, model.queue)
        self._dirty.add(model)
        self._drain()
        return Ticket(self, model, waiter)

    async def load(self, key: K) -> None:
        """Load ``key``'s model (Models page, CLI, chat) and keep it until it is used or
        unloaded; returns once it is loaded, raises when the load fails."""
        model = self._model(key)
        self._check_fits(model)
        model.kept = True
        waiter = self._enqueue(model, model.holds)
        self._drain()
        try:
            limit = self.settings.queue_timeout_s + self.settings.load_timeout_s
            await asyncio.wait_for(asyncio.shield(waiter.future), limit)
        finally:
            discard(waiter.future)
            if waiter in model.holds:  # gave up: a load nobody wants is cancelled
                model.holds.remove(waiter)
                self._maybe_cancel_load(model)
                self._drain()

    async def unload(self, key: K, reason: str = "requested") -> None:
        """Unload ``key``'s model once the requests it is answering are done (new ones wait
        and load it again afterwards); a load only explicit loads wait for ends at once (they
        are told). Returns when it is unloaded."""
        model = self._models.get(key)
        if model is None or model.state is ModelState.UNLOADED:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        model.unload_waiters.append(future)
        model.unload_reason = model.unload_reason or reason
        self._disarm_ttl(model)
        if model.state is ModelState.LOADING and not model.queue:
            model.fail_loads(stopped_while_loading(model.name))
            self._maybe_cancel_load(model)
        self._dirty.add(model)
        self._drain()
        await future

    def observed(self, key: K, loaded: bool) -> None:
        """What the runtime reports (a health check, a catalog sync). Taken as it is for a
        runtime that manages its own memory; for one we run, a model reported gone while we
        hold it loaded is checked: its process says whether it died (then it is cleaned up),
        for a report can be older than a restart that came after it. Ignored while a load,
        unload or check is under way."""
        model = self._model(key)
        if model.task is not None:
            return
        if model.state is ModelState.LOADED and not loaded:
            if self.backend.manages_own_memory(key):
                self._set_unloaded(model, Eviction("runtime", time.time()))
            else:  # ours: whatever is left of it is cleaned up before its memory counts free
                self._start_check(model)
                self._dirty.add(model)
            self._drain()
        elif model.state is ModelState.UNLOADED and loaded and self.backend.manages_own_memory(key):
            self._set_loaded(model)
            self._drain()

    def snapshot(self) -> list[ModelView]:
        """Every model the scheduler has seen."""
        return [m.view() for m in self._models.values()]

    def view(self, key: K) -> ModelView | None:
        """``key``'s model as the scheduler has it; None when it has not seen it."""
        model = self._models.get(key)
        return model.view() if model is not None else None

    def policy(self, key: K) -> ModelPolicy:
        """How ``key``'s model is kept."""
        model = self._models.get(key)
        return model.policy if model is not None else self._policy_for(key)

    def is_loaded(self, key: K) -> bool:
        """Whether ``key``'s model is loaded now (as the scheduler decided it)."""
        model = self._models.get(key)
        return model is not None and model.state is ModelState.LOADED

    def committed_bytes(self) -> int:
        """The estimates of every model loading, loaded or unloading (never above budget)."""
        return sum(m.estimate for m in self._models.values() if m.committed)

    def retry_after(self, model: ModelRecord[K]) -> float:
        """Seconds until a turn is likely free: the queue ahead, served at the model's pace."""
        ahead = (len(model.queue) + 1) / max(1, model.policy.max_concurrency)
        return min(RETRY_AFTER_MAX_S, max(1.0, ahead * model.service_s))

    async def aclose(self) -> None:
        """Stop deciding: cancel loads and timers, fail every waiter (models stay loaded)."""
        self._closed = True
        stopping = Unavailable("the gateway is shutting down", code="shutting_down")
        if self._wakeup is not None:
            self._wakeup.cancel()
        tasks = []
        for model in self._models.values():
            self._disarm_ttl(model)
            model.fail_waiters(stopping)
            if model.task is not None:
                model.task.cancel()
                tasks.append(model.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- decisions (synchronous: the event loop is the lock) ----------------------------------

    def _model(self, key: K) -> ModelRecord[K]:
        if self._closed:
            raise Unavailable("the gateway is shutting down", code="shutting_down")
        model = self._models.get(key)
        if model is None:
            estimate = self.backend.estimate_bytes(key)
            model = ModelRecord(key, str(key), self._policy_for(key), estimate)
            self._models[key] = model
        return model

    def _check_fits(self, model: ModelRecord[K]) -> None:
        held = sum(
            m.estimate
            for m in self._models.values()
            if m is not model and m.committed and m.policy.pinned
        )
        budget = self.settings.memory_budget_bytes
        if model.estimate > budget - held:
            raise InsufficientResources(
                f"{model.name} needs about {model.estimate} bytes; the memory budget is "
                f"{budget} bytes, {held} of them held by pinned models",
                code="model_too_large",
                hint="Raise memory_budget_bytes, unpin a model, or use a smaller quantization.",
            )

    def _enqueue(self, model: ModelRecord[K], line: deque[Waiter]) -> Waiter:
        self._seq += 1
        waiter = Waiter(asyncio.get_running_loop().create_future(), self._seq)
        line.append(waiter)
        return waiter

    def _grant(self, model: ModelRecord[K], waiter: Waiter) -> None:
        waiter.granted = True
        model.in_flight += 1
        model.kept = False
        self._disarm_ttl(model)
        if not waiter.future.done():
            waiter.future.set_result(None)
        self._dirty.add(model)

    def _drain(self) -> None:
        """Make every decision the current state allows; called after every change."""
        if self._closed:
            return
        for model in self._models.values():
            if model.state is ModelState.LOADED:
                self._serve_queue(model)
        waiting = [
            m
            for m in self._models.values()
            if m.state is ModelState.UNLOADED and (m.queue or m.holds) and m.task is None
        ]
        for model in sorted(waiting, key=ModelRecord.first_arrival):
            if not self._admit(model):
                break  # first come, first loaded: later models wait behind this one
        self._flush()

    def _serve_queue(self, model: ModelRecord[K]) -> None:
        if model.unload_reason is not None:
            if not model.in_flight and model.task is None:
                self._start_unload(model, Eviction(model.unload_reason, time.time()))
            return
        if model.suspect:
            return
        while model.queue and model.in_flight < model.policy.max_concurrency:
            self._grant(model, model.queue.popleft())
        while model.holds:
            hold = model.holds.popleft()
            if not hold.future.done():
                hold.future.set_result(None)
        if model.idle():
            self._arm_ttl(model)

    def _admit(self, model: ModelRecord[K]) -> bool:
        """Start ``model``'s load if memory and ``max_loaded`` allow, else start evicting
        idle models (least recently used first) to make room, or refuse it when it cannot
        fit at all. False when later models must wait behind this one."""
        now = time.monotonic()
        decision = decide(model, self._models.values(), self.settings, self._free(model), now)
        if decision.start:
            self._start_load(model)
            return True
        if decision.refusal is not None:
            log.warning("cannot load %s: %s", model.name, decision.refusal)
            model.last_error = str(decision.refusal)
            model.fail_loads(decision.refusal)
            self._dirty.add(model)
            return True
        if not decision.victims:
            self._wake_after_residency(now)
            return False
        for victim in decision.victims:
            self._start_unload(victim, Eviction("evicted", time.time(), model.name))
        return False

    def _free(self, model: ModelRecord[K]) -> int | None:
        """The machine's free memory as measured now, when ``model`` is held to it."""
        reading = self.settings.free_memory
        if reading is None or not model.estimate or self.backend.manages_own_memory(model.key):
            return None
        return reading()

    def _wake_after_residency(self, now: float) -> None:
        """A model kept by its minimum residency blocks a load: decide again when it ends."""
        ends = [
            (m.loaded_at or 0.0) + m.policy.min_residency_s
            for m in self._models.values()
            if m.state is ModelState.LOADED and m.idle() and not m.policy.pinned
        ]
        later = [end for end in ends if end > now]
        if later and self._wakeup is None:
            loop = asyncio.get_running_loop()
            self._wakeup = loop.call_later(min(later) - now + 0.001, self._on_wakeup)

    def _on_wakeup(self) -> None:
        self._wakeup = None
        self._drain()

    def _maybe_cancel_load(self, model: ModelRecord[K]) -> None:
        """A load nobody waits for any more is cancelled (the backend cleans up)."""
        if (
            model.state is ModelState.LOADING
            and not model.queue
            and not model.holds
            and model.task is not None
        ):
            model.task.cancel()

    # -- TTL ----------------------------------------------------------------------------------

    def _arm_ttl(self, model: ModelRecord[K]) -> None:
        ttl = model.policy.ttl_s
        if ttl is None or model.policy.pinned or model.kept or model.unload_reason is not None:
            self._disarm_ttl(model)
            return
        due = max(model.last_used + ttl, (model.loaded_at or 0.0) + model.policy.min_residency_s)
        if model.timer is not None and model.ttl_due == due:
            return
        self._disarm_ttl(model)
        model.ttl_due = due
        delay = max(0.0, due - time.monotonic())
        model.timer = asyncio.get_running_loop().call_later(delay, self._on_ttl, model)
        self._dirty.add(model)

    def _disarm_ttl(self, model: ModelRecord[K]) -> None:
        if model.timer is not None:
            model.timer.cancel()
            model.timer = None
            model.ttl_due = None

    def _on_ttl(self, model: ModelRecord[K]) -> None:
        model.timer, model.ttl_due = None, None
        if (
            model.state is ModelState.LOADED
            and model.idle()
            and model.task is None
            and model.unload_reason is None
            and not model.suspect
        ):
            self._start_unload(model, Eviction("ttl", time.time()))
        self._drain()

    # -- the slow parts, as tasks that report back ------------------------------------------

    def _start_load(self, model: ModelRecord[K]) -> None:
        model.state, model.progress, model.last_error = ModelState.LOADING, 0.0, None
        model.task = task = asyncio.get_running_loop().create_task(self._run_load(model))
        task.add_done_callback(lambda _: self._on_load_task_end(model, task))
        self._dirty.add(model)
        log.info("loading %s", model.name)

    def _on_load_task_end(self, model: ModelRecord[K], task: asyncio.Task[None]) -> None:
        """A load cancelled before it began never reported back: it ends as cancelled."""
        if task.cancelled() and model.task is task and not self._closed:
            self._on_load_done(model, LoadOutcome(cancelled=True))

    async def _run_load(self, model: ModelRecord[K]) -> None:
        def progress(value: float) -> None:
            model.progress = min(1.0, max(0.0, value))

        timeout = self.settings.load_timeout_s
        self._on_load_done(model, await call_load(self.backend, model.key, timeout, progress))

    def _on_load_done(self, model: ModelRecord[K], outcome: LoadOutcome) -> None:
        model.task = None
        if outcome.cancelled and model.unload_reason is not None:  # what it started goes
            self._start_unload(model, Eviction(model.unload_reason, time.time()))
            self._drain()
            return
        if outcome.error is None and not outcome.cancelled:
            self._set_loaded(model)
            log.info("loaded %s", model.name)
        else:
            model.state, model.progress = ModelState.UNLOADED, 0.0
            model.unload_reason = None  # an unload asked for meanwhile: nothing is loaded
            model.settle_unload_waiters()
            self._dirty.add(model)
            if outcome.error is not None:
                log.warning("loading %s failed: %s", model.name, outcome.error)
                model.last_error = outcome.error
                model.last_eviction = Eviction("load_failed", time.time())
                model.fail_loads(outcome.failure(model.name))
        self._drain()

    def _start_unload(self, model: ModelRecord[K], eviction: Eviction) -> None:
        model.state, model.pending = ModelState.UNLOADING, eviction
        self._disarm_ttl(model)
        model.task = asyncio.get_running_loop().create_task(self._run_unload(model))
        self._dirty.add(model)
        log.info("unloading %s (%s)", model.name, eviction.reason)

    async def _run_unload(self, model: ModelRecord[K]) -> None:
        try:
            error = await call_unload(self.backend, model.key, self.settings.unload_timeout_s)
        except asyncio.CancelledError:
            return  # shutting down
        gone = error is None or not await self._alive(model)
        self._on_unload_done(model, gone, error)

    def _on_unload_done(self, model: ModelRecord[K], gone: bool, error: str | None) -> None:
        model.task = None
        if gone:
            self._set_unloaded(model, model.pending or Eviction("requested", time.time()))
        else:  # still there: say so, and let a later decision try again
            log.warning("unloading %s failed: %s", model.name, error)
            model.state, model.last_error = ModelState.LOADED, f"unload failed: {error}"
            model.unload_reason = None
            failure = UpstreamError(f"{model.name} could not be unloaded: {error}")
            model.settle_unload_waiters(failure)
            self._dirty.add(model)
        self._drain()

    def _start_check(self, model: ModelRecord[K]) -> None:
        model.suspect = True
        model.task = asyncio.get_running_loop().create_task(self._run_check(model))

    async def _run_check(self, model: ModelRecord[K]) -> None:
        try:
            alive = await self._alive(model)
        except asyncio.CancelledError:
            return
        model.task, model.suspect = None, False
        if not alive:
            log.warning("%s stopped answering; it is restarted on the next request", model.name)
            model.unload_reason = "died"  # cleaned up once its requests have failed
            model.last_error = "the model server stopped answering"
        self._dirty.add(model)
        self._drain()

    async def _alive(self, model: ModelRecord[K]) -> bool:
        return await call_alive(self.backend, model.key, self.settings.check_timeout_s)

    # -- state changes --------------------------------------------------------------------------

    def _set_loaded(self, model: ModelRecord[K]) -> None:
        now = time.monotonic()
        model.state, model.progress = ModelState.LOADED, 1.0
        model.loaded_at = model.last_used = now
        self._dirty.add(model)

    def _set_unloaded(self, model: ModelRecord[K], eviction: Eviction) -> None:
        self._disarm_ttl(model)
        model.state, model.progress, model.loaded_at = ModelState.UNLOADED, 0.0, None
        model.last_eviction, model.pending = eviction, None
        model.unload_reason, model.suspect, model.kept = None, False, False
        model.settle_unload_waiters()
        self._dirty.add(model)
        log.info("unloaded %s (%s)", model.name, eviction.reason)

    def release_ticket(self, ticket: Ticket[K], model: ModelRecord[K], waiter: Waiter) -> None:
        """``Ticket.close``: the turn is over, or the wait given up."""
        if waiter.granted:
            now = time.monotonic()
            model.in_flight -= 1
            model.last_used = now
            if ticket.granted_at is not None:
                model.service_s = 0.8 * model.service_s + 0.2 * (now - ticket.granted_at)
            if ticket.failed and model.state is ModelState.LOADED and model.task is None:
                self._start_check(model)
        else:
            if waiter in model.queue:
                model.queue.remove(waiter)
            discard(waiter.future)
            self._maybe_cancel_load(model)
        self._dirty.add(model)
        self._drain()

    # -- what it shows --------------------------------------------------------------------------

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        if self._on_change is not None:
            for model in dirty:
                self._on_change(model.view())
