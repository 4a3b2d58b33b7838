"""The scheduler's vocabulary: model states, policies, the backend it drives, what it shows.

``Backend`` is the scheduler's whole window onto the world (llama-swap calls its equivalent
"the scheduler's syscall table"): estimate a model's memory, load it, unload it, ask whether
it is still alive, and say whether its runtime manages memory itself (Ollama, LM Studio).
The provider contract implements it; the tests implement it with fakes (slow, failing and
dying loads) and with real llama-server processes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from modelyard.events import ModelSchedule

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


class ModelState(StrEnum):
    """Where a model is in its life, as the scheduler decided it."""

    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"


class Backend(Protocol[K_contra]):
    """What the scheduler needs from whatever runs the models."""

    def estimate_bytes(self, key: K_contra) -> int:
        """Memory the model takes once loaded (weights, KV cache, runtime)."""
        ...

    def manages_own_memory(self, key: K_contra) -> bool:
        """Whether the model's runtime loads and evicts on its own (Ollama, LM Studio): its
        reports of what is loaded are then taken as they are (``Scheduler.observed``)."""
        ...

    async def load(self, key: K_contra, progress: Callable[[float], None]) -> None:
        """Load the model, calling ``progress(0..1)`` as it goes; raise when it cannot.
        When cancelled (nobody waits any more) it must leave nothing running."""
        ...

    async def unload(self, key: K_contra) -> None:
        """Unload the model (through the runtime's API where it has one; stop the process
        where we run it). On return the model's memory is free."""
        ...

    async def is_alive(self, key: K_contra) -> bool:
        """Whether the loaded model still answers (its process lives, its runtime has it)."""
        ...


@dataclass(frozen=True)
class ModelPolicy:
    """How one model is kept.

    ``ttl_s``: unload after this long without a request, counted from the end of the last
    one (None: never for idleness). ``min_residency_s``: once loaded, not evicted for another
    model nor unloaded for idleness sooner. ``max_concurrency``: requests served at once
    (llama.cpp's slots); more wait in the queue, up to ``max_queue`` (then 429).
    ``pinned``: never evicted nor unloaded for idleness (an explicit unload still works).
    """

    ttl_s: float | None = 300.0
    min_residency_s: float = 0.0
    max_concurrency: int = 4
    max_queue: int = 256
    pinned: bool = False


@dataclass(frozen=True)
class SchedulerSettings:
    """Limits for every model together.

    ``memory_budget_bytes`` bounds the sum of the estimates of the models loading, loaded or
    unloading. ``max_loaded`` (0: no limit) bounds how many there are. ``queue_timeout_s``
    is the longest a request waits for its turn (then 503); ``load_timeout_s``,
    ``unload_timeout_s`` and ``check_timeout_s`` bound the backend's calls.
    ``free_memory`` reads the machine's free memory now (None: loads are held to the budget
    only); a load also needs its estimate plus ``memory_margin_bytes`` of it
    (``admission.py``).
    """

    memory_budget_bytes: int
    free_memory: Callable[[], int] | None = None
    memory_margin_bytes: int = 0
    max_loaded: int = 0
    queue_timeout_s: float = 120.0
    load_timeout_s: float = 300.0
    unload_timeout_s: float = 30.0
    check_timeout_s: float = 5.0


@dataclass(frozen=True)
class Eviction:
    """Why a model left memory: ``ttl``, ``evicted`` (for ``for_model``), ``requested``,
    ``died`` (its backend stopped answering), ``load_failed`` or ``runtime`` (its runtime
    unloaded it on its own). ``at`` is wall-clock seconds."""

    reason: str
    at: float
    for_model: str | None = None


@dataclass(frozen=True)
class ModelView:
    """One model's scheduling state, as data for the API, events and metrics."""

    key: str
    state: ModelState
    in_flight: int
    queued: int
    estimate_bytes: int
    load_progress: float | None  # 0..1 while loading
    ttl_left_s: float | None  # until an idle unload; None when none is due
    pinned: bool
    loaded_at: float | None  # wall clock
    last_used_at: float | None  # wall clock, end of the last request
    last_eviction: Eviction | None
    last_error: str | None

    def wire(self) -> ModelSchedule:
        """As the API and the ``model.schedule`` event show it."""
        eviction = self.last_eviction
        return ModelSchedule(
            key=self.key,
            state=self.state.value,
            in_flight=self.in_flight,
            queued=self.queued,
            estimate_bytes=self.estimate_bytes,
            load_progress=self.load_progress,
            ttl_left_s=None if self.ttl_left_s is None else round(self.ttl_left_s, 1),
            pinned=self.pinned,
            loaded_at=self.loaded_at,
            last_used_at=self.last_used_at,
            last_eviction=None if eviction is None else asdict(eviction),
            last_error=self.last_error,
        )


@dataclass(frozen=True)
class WaitView:
    """What a waiting request can tell its client: ``state`` of the model, the load's
    ``progress`` and the request's ``position`` in the model's queue (1 is next)."""

    model: str
    state: ModelState
    progress: float | None
    position: int

    def heartbeat(self) -> str:
        """The SSE comment text: ``loading <model> 42%`` or ``queued <model> 3``."""
        if self.state is ModelState.LOADING:
            return f"loading {self.model} {round((self.progress or 0.0) * 100)}%"
        if self.state is ModelState.UNLOADING:
            return f"waiting for {self.model} to unload"
        return f"queued {self.model} {self.position}"
