"""A randomized run of the scheduler: thousands of requests across more models than the
memory budget holds, with TTL expiries, forced unloads, failing loads, killed backends and
clients that disconnect while queued, loading or answering. Bounded in count and time; the
seeds are fixed so a failure replays.

It must end with no request hung past its deadline, no leaked in-flight count, nothing left
loaded after the final unloads, and the sum of the loaded estimates never above the budget
at any change of state (the scheduler's account and the fake backend's own).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from modelyard.errors import ModelyardError
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelPolicy, ModelView, SchedulerSettings
from tests.gateway.fake_backend import FakeBackend

MB = 1 << 20
REQUESTS = 3000
CLIENTS = 64  # requests in the air at once
QUEUE_TIMEOUT_S = 1.0
LOAD_TIMEOUT_S = 1.0
HOLD_MAX_S = 0.02
# A request may wait its queue timeout, then (if it was granted just then) answer: anything
# longer than this is a hang.
DEADLINE_S = QUEUE_TIMEOUT_S + HOLD_MAX_S + 1.0
EXPECTED = {"queue_timeout", "queue_full", "load_failed"}


async def _run(seed: int) -> None:
    rng = random.Random(seed)
    sizes = {f"m{i}": rng.randint(1, 4) * MB for i in range(8)}
    budget = 8 * MB
    backend = FakeBackend(sizes, budget=budget, load_s=0.01, unload_s=0.005)
    policies = {
        key: ModelPolicy(
            ttl_s=rng.choice([0.02, 0.1, 0.5, None]),
            min_residency_s=rng.choice([0.0, 0.0, 0.02]),
            max_concurrency=rng.randint(1, 4),
            max_queue=rng.choice([8, 64]),
            pinned=key == "m0",
        )
        for key in sizes
    }
    over_budget: list[int] = []
    scheduler: Scheduler[str]

    def sample(_: ModelView) -> None:
        if scheduler.committed_bytes() > budget:
            over_budget.append(scheduler.committed_bytes())

    scheduler = Scheduler(
        backend,
        SchedulerSettings(
            memory_budget_bytes=budget,
            max_loaded=4,
            queue_timeout_s=QUEUE_TIMEOUT_S,
            load_timeout_s=LOAD_TIMEOUT_S,
        ),
        policy_for=policies.__getitem__,
        on_change=sample,
    )
    outcomes: Counter[str] = Counter()
    hung: list[str] = []
    keys = sorted(sizes)
    slots = asyncio.Semaphore(CLIENTS)

    async def client(n: int) -> None:
        key = rng.choice(keys)
        hold = rng.uniform(0, HOLD_MAX_S)
        fails = rng.random() < 0.02

        async def serve() -> None:
            with scheduler.request(key) as ticket:
                await ticket.ready()
                await asyncio.sleep(hold)
                if fails:
                    backend.kill(key)
                    ticket.backend_failed()

        async with slots:
            task = asyncio.create_task(serve())
            if rng.random() < 0.1:  # the client disconnects at a random moment
                await asyncio.sleep(rng.uniform(0, 0.03))
                task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(task), DEADLINE_S)
                outcomes["ok"] += 1
            except asyncio.CancelledError:
                outcomes["disconnected"] += 1
            except TimeoutError:
                hung.append(f"request {n} for {key}")
                task.cancel()
            except ModelyardError as exc:
                assert exc.error_code in EXPECTED, exc
                outcomes[exc.error_code] += 1

    async def chaos(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.005, 0.03))
            key = rng.choice(keys)
            roll = rng.random()
            if roll < 0.3:
                forced = asyncio.create_task(scheduler.unload(key))
                forced.add_done_callback(lambda t: t.cancelled() or t.exception())
            elif roll < 0.45:
                backend.kill(key)
                scheduler.observed(key, loaded=False)
            elif roll < 0.5:  # its loads fail for a while
                backend.fail_loads.add(key)
                asyncio.get_running_loop().call_later(0.05, backend.fail_loads.discard, key)

    stop = asyncio.Event()
    chaos_task = asyncio.create_task(chaos(stop))
    await asyncio.gather(*(client(n) for n in range(REQUESTS)))
    stop.set()
    await chaos_task
    backend.fail_loads.clear()

    assert hung == []
    assert over_budget == [] and backend.violations == []
    for view in scheduler.snapshot():
        assert view.in_flight == 0 and view.queued == 0, view
    assert outcomes["ok"] > REQUESTS // 2, outcomes  # the chaos did not just fail everything
    for key in keys:
        await asyncio.wait_for(scheduler.unload(key), 5)
    assert backend.resident == set()  # nothing left running
    await scheduler.aclose()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_randomized_run_never_hangs_leaks_or_overspends(seed: int) -> None:
    asyncio.run(asyncio.wait_for(_run(seed), 120))
