"""A fake of the scheduler's ``Backend``: the collaborator of the thing under test, with the
faults a real one has — slow loads, failing loads, loads that hang, backends that die.

It keeps its own account of what is in memory (loading or loaded), independent of the
scheduler's, and records the worst it ever saw: two loads of one model at once, a load
started while the model was loaded, the memory in use above the budget.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FakeBackend:
    sizes: dict[str, int]
    budget: int = 0  # when set, memory in use above it is recorded as a violation
    load_s: float = 0.0
    unload_s: float = 0.0
    steps: int = 4  # progress reports per load
    self_managed: set[str] = field(default_factory=set)
    fail_loads: set[str] = field(default_factory=set)  # these raise (until removed)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)  # loads wait for these
    loads: Counter[str] = field(default_factory=Counter)
    unloads: Counter[str] = field(default_factory=Counter)
    cancelled_loads: Counter[str] = field(default_factory=Counter)
    resident: set[str] = field(default_factory=set)  # loading or loaded, by our account
    dead: set[str] = field(default_factory=set)
    violations: list[str] = field(default_factory=list)

    def estimate_bytes(self, key: str) -> int:
        return self.sizes[key]

    def manages_own_memory(self, key: str) -> bool:
        return key in self.self_managed

    def in_use(self) -> int:
        return sum(self.sizes[k] for k in self.resident)

    async def load(self, key: str, progress: Callable[[float], None]) -> None:
        if key in self.resident:
            self.violations.append(f"{key} loaded twice")
        self.resident.add(key)
        self.dead.discard(key)
        self.loads[key] += 1
        if self.budget and self.in_use() > self.budget:
            self.violations.append(f"{self.in_use()} bytes in use > budget {self.budget}")
        try:
            for step in range(self.steps):
                await asyncio.sleep(self.load_s / self.steps)
                progress((step + 1) / self.steps)
            if key in self.gates:
                await self.gates[key].wait()
            if key in self.fail_loads:
                raise RuntimeError(f"{key}: failed to load model")
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                self.cancelled_loads[key] += 1
            self.resident.discard(key)  # a load that did not finish leaves nothing behind
            raise

    async def unload(self, key: str) -> None:
        self.unloads[key] += 1
        await asyncio.sleep(self.unload_s)
        self.resident.discard(key)
        self.dead.discard(key)

    async def is_alive(self, key: str) -> bool:
        await asyncio.sleep(0)
        return key in self.resident and key not in self.dead

    def kill(self, key: str) -> None:
        """The model's process dies (its memory stays counted until it is cleaned up)."""
        self.dead.add(key)
