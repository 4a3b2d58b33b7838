"""The scheduler against a fake backend: one load per model, FIFO, admission by memory, LRU
eviction of idle models only, TTL, residency, pins, limits, cancellation, dying backends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from modelyard.errors import (
    Conflict,
    InsufficientResources,
    TooManyRequests,
    Unavailable,
    UpstreamError,
)
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import (
    ModelPolicy,
    ModelState,
    ModelView,
    SchedulerSettings,
    WaitView,
)
from tests.gateway.fake_backend import FakeBackend

T = TypeVar("T")
MB = 1 << 20


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 30))


def make(
    backend: FakeBackend,
    budget: int = 10 * MB,
    policies: dict[str, ModelPolicy] | None = None,
    views: list[ModelView] | None = None,
    **settings: Any,
) -> Scheduler[str]:
    backend.budget = budget
    default = ModelPolicy()
    return Scheduler(
        backend,
        SchedulerSettings(memory_budget_bytes=budget, **settings),
        policy_for=lambda key: (policies or {}).get(key, default),
        on_change=views.append if views is not None else None,
    )


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def state(scheduler: Scheduler[str], key: str) -> ModelState:
    return next(v.state for v in scheduler.snapshot() if v.key == key)


async def use(scheduler: Scheduler[str], key: str, hold_s: float = 0.0) -> None:
    with scheduler.request(key) as ticket:
        await ticket.ready()
        await asyncio.sleep(hold_s)


def test_fifty_requests_for_an_unloaded_model_load_it_once() -> None:
    backend = FakeBackend({"a": MB}, load_s=0.2)

    async def main() -> None:
        scheduler = make(backend)
        await asyncio.gather(*(use(scheduler, "a", 0.01) for _ in range(50)))
        assert backend.loads["a"] == 1
        view = scheduler.snapshot()[0]
        assert view.state is ModelState.LOADED and view.in_flight == 0 and view.queued == 0
        await scheduler.aclose()

    run(main())
    assert backend.violations == []


def test_requests_beyond_the_concurrency_limit_are_served_in_arrival_order() -> None:
    backend = FakeBackend({"a": MB})
    order: list[int] = []

    async def one(scheduler: Scheduler[str], n: int) -> None:
        with scheduler.request("a") as ticket:
            await ticket.ready()
            order.append(n)
            await asyncio.sleep(0.005)

    async def main() -> None:
        scheduler = make(backend, policies={"a": ModelPolicy(max_concurrency=1)})
        tasks = []
        for n in range(20):
            tasks.append(asyncio.create_task(one(scheduler, n)))
            await asyncio.sleep(0)  # each request arrives before the next
        await asyncio.gather(*tasks)
        await scheduler.aclose()

    run(main())
    assert order == list(range(20))


async def least_recent_goes(scheduler: Scheduler[str]) -> None:
    """With room for two of a, b and c: a, b, a again, then c evicts b, the least recent."""
    await use(scheduler, "a")
    await use(scheduler, "b")
    await use(scheduler, "a")  # b is now the least recently used
    await use(scheduler, "c")
    assert state(scheduler, "b") is ModelState.UNLOADED
    assert {state(scheduler, "a"), state(scheduler, "c")} == {ModelState.LOADED}
    evicted = next(v for v in scheduler.snapshot() if v.key == "b").last_eviction
    assert evicted is not None and evicted.reason == "evicted" and evicted.for_model == "c"
    await scheduler.aclose()


def test_a_model_that_does_not_fit_evicts_the_least_recently_used_idle_one() -> None:
    backend = FakeBackend({"a": 4 * MB, "b": 4 * MB, "c": 4 * MB})
    views: list[ModelView] = []
    run(least_recent_goes(make(backend, budget=8 * MB, views=views)))
    assert backend.violations == []
    assert all(v.state is not ModelState.LOADING or v.load_progress is not None for v in views)


async def answering_models_stay(scheduler: Scheduler[str], backend: FakeBackend) -> None:
    """With room for two of a, b and c: a and b answer, c waits; once b is done it goes."""
    busy_a = scheduler.request("a")
    await busy_a.ready()
    busy_b = scheduler.request("b")
    await busy_b.ready()
    waiting_c = asyncio.create_task(use(scheduler, "c"))
    await asyncio.sleep(0.1)
    assert not waiting_c.done()
    assert backend.unloads == {} and backend.loads["c"] == 0
    busy_b.close()  # b is done answering: now it may go
    await waiting_c
    assert state(scheduler, "a") is ModelState.LOADED
    assert state(scheduler, "b") is ModelState.UNLOADED
    busy_a.close()
    await scheduler.aclose()


def test_a_model_that_is_answering_is_never_evicted() -> None:
    backend = FakeBackend({"a": 4 * MB, "b": 4 * MB, "c": 4 * MB})
    run(answering_models_stay(make(backend, budget=8 * MB), backend))
    assert backend.violations == []


def test_max_loaded_bounds_the_number_of_models() -> None:
    backend = FakeBackend({"a": MB, "b": MB, "c": MB})

    async def main() -> None:
        scheduler = make(backend, max_loaded=2)
        for key in "abcab":
            await use(scheduler, key)
            loaded = [v for v in scheduler.snapshot() if v.state is not ModelState.UNLOADED]
            assert len(loaded) <= 2
        await scheduler.aclose()

    run(main())
    assert sum(backend.loads.values()) == 5


def test_an_idle_model_is_unloaded_after_its_ttl_counted_from_the_last_request() -> None:
    backend = FakeBackend({"a": MB})

    async def main() -> None:
        scheduler = make(backend, policies={"a": ModelPolicy(ttl_s=0.3)})
        await use(scheduler, "a")
        view = scheduler.snapshot()[0]
        assert view.ttl_left_s is not None and 0 < view.ttl_left_s <= 0.3
        await asyncio.sleep(0.15)
        await use(scheduler, "a", hold_s=0.3)  # in use past the first TTL: not unloaded
        assert state(scheduler, "a") is ModelState.LOADED
        await until(lambda: state(scheduler, "a") is ModelState.UNLOADED)
        view = scheduler.snapshot()[0]
        assert view.last_eviction is not None and view.last_eviction.reason == "ttl"
        await scheduler.aclose()

    run(main())
    assert backend.loads["a"] == 1 and backend.unloads["a"] == 1


def test_a_request_during_a_ttl_unload_waits_for_it_and_loads_again() -> None:
    backend = FakeBackend({"a": MB}, unload_s=0.2)

    async def main() -> None:
        scheduler = make(backend, policies={"a": ModelPolicy(ttl_s=0.05)})
        await use(scheduler, "a")
        await until(lambda: state(scheduler, "a") is ModelState.UNLOADING)
        await use(scheduler, "a")  # arrives mid-unload
        assert state(scheduler, "a") is ModelState.LOADED
        await scheduler.aclose()

    run(main())
    assert backend.loads["a"] == 2 and backend.unloads["a"] == 1
    assert backend.violations == []


def test_minimum_residency_delays_an_eviction_until_it_ends() -> None:
    backend = FakeBackend({"a": 4 * MB, "b": 4 * MB})

    async def main() -> None:
        policy = ModelPolicy(min_residency_s=0.3)
        scheduler = make(backend, budget=4 * MB, policies={"a": policy})
        await use(scheduler, "a")
        waiting = asyncio.create_task(use(scheduler, "b"))
        await asyncio.sleep(0.1)
        assert not waiting.done() and state(scheduler, "a") is ModelState.LOADED
        await waiting  # the residency ended, a was evicted, b loaded
        assert state(scheduler, "a") is ModelState.UNLOADED
        await scheduler.aclose()

    run(main())


def test_a_pinned_model_stays_and_a_model_that_cannot_fit_beside_it_is_refused() -> None:
    backend = FakeBackend({"a": 6 * MB, "b": 6 * MB, "c": 2 * MB})

    async def main() -> None:
        scheduler = make(
            backend,
            budget=8 * MB,
            policies={"a": ModelPolicy(pinned=True, ttl_s=0.01)},
        )
        await use(scheduler, "a")
        with pytest.raises(InsufficientResources) as refused:
            scheduler.request("b")
        assert refused.value.error_code == "model_too_large"
        await use(scheduler, "c")
        await asyncio.sleep(0.05)  # longer than its TTL: pinned models ignore it
        assert state(scheduler, "a") is ModelState.LOADED
        await scheduler.aclose()

    run(main())


def test_a_full_queue_answers_429_and_a_long_wait_503_both_with_retry_after() -> None:
    backend = FakeBackend({"a": MB})

    async def main() -> None:
        policy = ModelPolicy(max_concurrency=1, max_queue=2)
        scheduler = make(backend, policies={"a": policy}, queue_timeout_s=0.2)
        first = scheduler.request("a")
        await first.ready()
        queued = [scheduler.request("a"), scheduler.request("a")]
        with pytest.raises(TooManyRequests) as full:
            scheduler.request("a")
        assert full.value.error_code == "queue_full"
        assert int(full.value.headers()["Retry-After"]) >= 1
        with pytest.raises(Unavailable) as timed_out:
            await queued[0].ready()
        assert timed_out.value.error_code == "queue_timeout"
        assert "Retry-After" in timed_out.value.headers()
        for ticket in [first, *queued]:
            ticket.close()
        assert scheduler.snapshot()[0].in_flight == 0
        assert scheduler.snapshot()[0].queued == 0
        await scheduler.aclose()

    run(main())


def test_a_load_nobody_waits_for_is_cancelled() -> None:
    backend = FakeBackend({"a": MB})

    async def main() -> None:
        backend.gates["a"] = asyncio.Event()  # the load hangs until released
        scheduler = make(backend)
        ticket = scheduler.request("a")
        waiting = asyncio.create_task(ticket.ready())
        await until(lambda: backend.loads["a"] == 1)
        waiting.cancel()  # the client went away
        ticket.close()
        await until(lambda: state(scheduler, "a") is ModelState.UNLOADED)
        await scheduler.aclose()

    run(main())
    assert backend.cancelled_loads["a"] == 1 and backend.resident == set()


def test_a_failed_load_fails_its_waiters_and_the_next_request_tries_again() -> None:
    backend = FakeBackend({"a": MB}, fail_loads={"a"})

    async def main() -> None:
        scheduler = make(backend)
        attempts = (use(scheduler, "a") for _ in range(3))
        results = await asyncio.gather(*attempts, return_exceptions=True)
        assert all(isinstance(r, UpstreamError) and r.error_code == "load_failed" for r in results)
        view = scheduler.snapshot()[0]
        assert view.state is ModelState.UNLOADED and view.last_error is not None
        backend.fail_loads.clear()
        await use(scheduler, "a")
        await scheduler.aclose()

    run(main())
    assert backend.loads["a"] == 2


def test_a_backend_that_died_is_cleaned_up_and_restarted_by_the_next_request() -> None:
    backend = FakeBackend({"a": MB})

    async def main() -> None:
        scheduler = make(backend)
        await use(scheduler, "a")
        backend.kill("a")
        with scheduler.request("a") as ticket:
            await ticket.ready()
            ticket.backend_failed()  # the relay saw the connection fail
        await until(lambda: state(scheduler, "a") is ModelState.UNLOADED)
        eviction = scheduler.snapshot()[0].last_eviction
        assert eviction is not None and eviction.reason == "died"
        await use(scheduler, "a")
        assert state(scheduler, "a") is ModelState.LOADED
        await scheduler.aclose()

    run(main())
    assert backend.loads["a"] == 2 and backend.unloads["a"] == 1


def test_a_backend_failure_report_on_a_live_backend_changes_nothing() -> None:
    backend = FakeBackend({"a": MB})

    async def main() -> None:
        scheduler = make(backend)
        with scheduler.request("a") as ticket:
            await ticket.ready()
            ticket.backend_failed()
        await asyncio.sleep(0.05)
        await use(scheduler, "a")
        await scheduler.aclose()

    run(main())
    assert backend.loads["a"] == 1 and backend.unloads["a"] == 0


def test_an_explicit_load_is_kept_and_an_explicit_unload_waits_for_requests() -> None:
    backend = FakeBackend({"a": MB})

    async def main() -> None:
        scheduler = make(backend, policies={"a": ModelPolicy(ttl_s=0.05)})
        await scheduler.load("a")
        await asyncio.sleep(0.15)
        assert state(scheduler, "a") is ModelState.LOADED  # no idle unload after a load
        busy = scheduler.request("a")
        await busy.ready()
        unloading = asyncio.create_task(scheduler.unload("a"))
        await asyncio.sleep(0.05)
        assert not unloading.done() and backend.unloads["a"] == 0
        busy.close()
        await unloading
        view = scheduler.snapshot()[0]
        assert view.state is ModelState.UNLOADED
        assert view.last_eviction is not None and view.last_eviction.reason == "requested"
        await scheduler.aclose()

    run(main())


def test_an_unload_during_a_load_only_explicit_loads_wait_for_ends_it() -> None:
    """A stop pressed while a server loads: the explicit load is told, the load is cancelled
    and what it started is unloaded; the unload returns without waiting for the load."""
    backend = FakeBackend({"a": MB})

    async def main() -> None:
        backend.gates["a"] = asyncio.Event()  # the load hangs until released
        scheduler = make(backend)
        start = asyncio.create_task(scheduler.load("a"))
        await until(lambda: backend.loads["a"] == 1)
        await scheduler.unload("a")
        with pytest.raises(Conflict) as told:
            await start
        assert told.value.error_code == "stopped_while_loading"
        view = scheduler.snapshot()[0]
        assert view.state is ModelState.UNLOADED and scheduler.committed_bytes() == 0
        assert view.last_eviction is not None and view.last_eviction.reason == "requested"
        await scheduler.aclose()

    run(main())
    assert backend.cancelled_loads["a"] == 1 and backend.unloads["a"] == 1
    assert backend.resident == set()


def test_an_unload_asked_for_during_a_load_that_fails_returns() -> None:
    """A request waits for the load, so the unload lets it run; it fails: nothing is loaded,
    and the unload is done (it waited for ever)."""
    backend = FakeBackend({"a": MB}, load_s=0.05, fail_loads={"a"})

    async def main() -> None:
        scheduler = make(backend)
        with scheduler.request("a") as ticket:
            waiting = asyncio.create_task(ticket.ready())
            await until(lambda: backend.loads["a"] == 1)
            await asyncio.wait_for(scheduler.unload("a"), 5)
            with pytest.raises(UpstreamError):
                await waiting
        assert state(scheduler, "a") is ModelState.UNLOADED
        await scheduler.aclose()

    run(main())


def test_what_a_self_managed_runtime_reports_is_taken_as_it_is() -> None:
    backend = FakeBackend({"ollama": MB, "llama": MB}, self_managed={"ollama"})

    async def main() -> None:
        scheduler = make(backend)
        scheduler.observed("ollama", loaded=True)  # someone loaded it through Ollama itself
        assert state(scheduler, "ollama") is ModelState.LOADED
        scheduler.observed("llama", loaded=True)  # ours to start: a report does not load it
        assert state(scheduler, "llama") is ModelState.UNLOADED
        scheduler.observed("ollama", loaded=False)
        view = next(v for v in scheduler.snapshot() if v.key == "ollama")
        assert view.state is ModelState.UNLOADED
        assert view.last_eviction is not None and view.last_eviction.reason == "runtime"
        await scheduler.aclose()

    run(main())


def test_waiting_requests_see_the_load_progress() -> None:
    backend = FakeBackend({"a": MB}, load_s=0.4, steps=4)
    seen: list[str] = []

    async def beat(view: WaitView) -> None:
        seen.append(view.heartbeat())

    async def main() -> None:
        scheduler = make(backend)
        with scheduler.request("a") as ticket:
            await ticket.ready(beat, interval_s=0.05)
        await scheduler.aclose()

    run(main())
    assert seen[0].startswith("loading a ") and seen[0].endswith("%")
    percents = [int(s.split()[-1].rstrip("%")) for s in seen]
    assert percents == sorted(percents) and percents[-1] >= 50


def test_closing_fails_the_waiters() -> None:
    backend = FakeBackend({"a": MB})

    async def main() -> None:
        backend.gates["a"] = asyncio.Event()
        scheduler = make(backend)
        with scheduler.request("a") as ticket:
            waiting = asyncio.create_task(ticket.ready())
            await until(lambda: backend.loads["a"] == 1)
            await scheduler.aclose()
            with pytest.raises(Unavailable):
                await waiting

    run(main())
