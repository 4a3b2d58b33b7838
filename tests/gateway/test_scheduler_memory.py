"""Admission by measured free memory as well as the budget: idle models are evicted, least
recently used first, when the machine (not the budget) is short; answering and pinned ones
never are; a model that cannot fit however many leave is refused with 507
``insufficient_memory`` and nothing is loaded or evicted for it.

The free-memory reading is injected: this machine's real one cannot be made short on
demand. It is what a machine of ``machine`` bytes shows with ``other`` bytes taken by other
programs and the fake backend's loaded models resident."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from modelyard.errors import InsufficientResources
from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelPolicy, ModelState, SchedulerSettings
from tests.gateway.fake_backend import FakeBackend
from tests.gateway.test_scheduler import (
    MB,
    answering_models_stay,
    least_recent_goes,
    run,
    state,
    use,
)


@dataclass
class Machine:
    backend: FakeBackend
    size: int
    other: int = 0  # taken by programs that are not ours
    lowest: int | None = None  # the least free memory any reading saw

    def free(self) -> int:
        free = self.size - self.other - self.backend.in_use()
        self.lowest = free if self.lowest is None else min(self.lowest, free)
        return free


def make(
    machine: Machine, policies: dict[str, ModelPolicy] | None = None, margin: int = 0
) -> Scheduler[str]:
    settings = SchedulerSettings(
        memory_budget_bytes=1 << 40,  # never the limit here
        free_memory=machine.free,
        memory_margin_bytes=margin,
    )
    default = ModelPolicy()
    return Scheduler(machine.backend, settings, lambda key: (policies or {}).get(key, default))


def test_an_idle_model_is_evicted_when_free_memory_is_short() -> None:
    backend = FakeBackend({"a": 4 * MB, "b": 4 * MB, "c": 4 * MB})
    machine = Machine(backend, size=11 * MB)

    run(least_recent_goes(make(machine, margin=MB)))
    assert backend.unloads == {"b": 1} and backend.violations == []
    assert machine.lowest is not None and machine.lowest >= MB  # the margin was kept


def test_an_answering_model_is_not_evicted_and_its_successor_waits() -> None:
    backend = FakeBackend({"a": 4 * MB, "b": 4 * MB, "c": 4 * MB})
    run(answering_models_stay(make(Machine(backend, size=10 * MB)), backend))
    assert backend.unloads == {"b": 1} and backend.violations == []


def test_a_model_that_cannot_fit_is_refused_and_nothing_is_loaded_or_evicted() -> None:
    backend = FakeBackend({"a": 4 * MB, "big": 8 * MB, "pinned": 2 * MB})
    machine = Machine(backend, size=12 * MB, other=3 * MB)

    async def main() -> None:
        scheduler = make(machine, policies={"pinned": ModelPolicy(pinned=True)})
        await use(scheduler, "pinned")
        await use(scheduler, "a")
        # 3 MB free, 4 more if a left; the pinned model stays: 7 < 8.
        with scheduler.request("big") as ticket, pytest.raises(InsufficientResources) as refused:
            await ticket.ready()
        assert refused.value.error_code == "insufficient_memory"
        assert refused.value.status == 507
        with pytest.raises(InsufficientResources):
            await scheduler.load("big")  # the Models page's and the CLI's start: the same
        big = scheduler.view("big")
        assert big is not None and big.state is ModelState.UNLOADED and big.queued == 0
        assert big.last_error is not None and "big" in big.last_error
        assert {state(scheduler, "a"), state(scheduler, "pinned")} == {ModelState.LOADED}
        await use(scheduler, "a")  # the others go on being served
        await scheduler.aclose()

    run(main())
    assert backend.loads["big"] == 0 and backend.unloads == {}
    assert backend.resident == {"a", "pinned"}


def test_a_runtime_that_manages_its_own_memory_is_held_to_the_budget_only() -> None:
    backend = FakeBackend({"a": 4 * MB, "ollama": 8 * MB}, self_managed={"ollama"})
    machine = Machine(backend, size=10 * MB)

    async def main() -> None:
        scheduler = make(machine)
        await use(scheduler, "a")
        await use(scheduler, "ollama")  # its runtime makes room itself
        assert {state(scheduler, "a"), state(scheduler, "ollama")} == {ModelState.LOADED}
        await scheduler.aclose()

    run(main())
    assert backend.unloads == {}
