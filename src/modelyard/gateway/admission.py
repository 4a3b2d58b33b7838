"""Admission by memory: whether a model's load may start now, which idle models go first to
make room, or that it cannot fit however many leave.

Two limits hold at once, as in Ollama's scheduler: the budget (the sum of the estimates of
the models loading, loaded or unloading stays within ``memory_budget_bytes``) and the
machine (the estimate plus ``memory_margin_bytes`` fits in the memory measured free now,
less what the loads under way have yet to take). Evicting an idle model frees its estimate
for both. Models whose runtime manages its own memory (Ollama, LM Studio) are held to the
budget only: their runtime makes room on the machine itself.

Pure functions of the scheduler's records, called from its decisions (``Scheduler._admit``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic

from modelyard.errors import InsufficientResources
from modelyard.gateway.scheduling import K, ModelState, SchedulerSettings
from modelyard.gateway.tickets import ModelRecord


@dataclass
class Admission(Generic[K]):
    """The decision for one waiting model: ``start`` its load now; else evict ``victims``
    (least recently used first) and decide again once they are gone; or, with ``refusal``,
    fail its waiters. Nothing of the three: wait (for unloads under way, or for busy models
    to finish)."""

    start: bool = False
    victims: list[ModelRecord[K]] = field(default_factory=list)
    refusal: InsufficientResources | None = None


def decide(
    model: ModelRecord[K],
    models: Iterable[ModelRecord[K]],
    settings: SchedulerSettings,
    free_bytes: int | None,
    now: float,
) -> Admission[K]:
    """Admit ``model`` against the budget, ``max_loaded`` and ``free_bytes`` (the machine's
    measured free memory; None: not held to it). ``now`` is monotonic."""
    others = [m for m in models if m is not model]
    active = [m for m in others if m.committed]
    unloading = [m for m in active if m.state is ModelState.UNLOADING]
    leaving = sum(m.estimate for m in unloading)
    budget, limit = settings.memory_budget_bytes, settings.max_loaded
    used = sum(m.estimate for m in active)
    # Short of the machine's memory: what loads under way have not taken yet counts as used.
    short = 0
    if free_bytes is not None:
        loading = sum(m.estimate for m in active if m.state is ModelState.LOADING)
        short = model.estimate + settings.memory_margin_bytes - (free_bytes - loading)
    if used + model.estimate <= budget and (not limit or len(active) < limit) and short <= 0:
        return Admission(start=True)
    # What is still missing once the unloads under way are done.
    missing = used - leaving + model.estimate - budget
    short -= leaving
    extra = len(active) - len(unloading) + 1 - limit if limit else 0
    if missing <= 0 and extra <= 0 and short <= 0:
        return Admission()
    releasable = sum(m.estimate for m in active if m not in unloading and not m.policy.pinned)
    if short > releasable:  # even with every model of ours gone, the machine lacks room
        available = (free_bytes or 0) + leaving + releasable
        return Admission(refusal=insufficient_memory(model, settings, available))
    victims: list[ModelRecord[K]] = []
    for candidate in sorted(evictable(others, now), key=lambda m: m.last_used):
        if missing <= 0 and extra <= 0 and short <= 0:
            break
        victims.append(candidate)
        missing -= candidate.estimate
        short -= candidate.estimate
        extra -= 1
    if missing > 0 or extra > 0 or short > 0:
        return Admission()  # the models in the way are busy: wait for one to finish
    return Admission(victims=victims)


def evictable(models: Iterable[ModelRecord[K]], now: float) -> list[ModelRecord[K]]:
    """Loaded models that may be unloaded for another: idle, unpinned, past their minimum
    residency, with nothing else under way."""
    return [
        m
        for m in models
        if m.state is ModelState.LOADED
        and m.idle()
        and not m.policy.pinned
        and m.unload_reason is None
        and m.task is None
        and not m.suspect
        and now >= (m.loaded_at or 0.0) + m.policy.min_residency_s
    ]


def insufficient_memory(
    model: ModelRecord[K], settings: SchedulerSettings, available: int
) -> InsufficientResources:
    """The 507 a model gets when the machine cannot hold it beside what nobody may evict."""
    need = model.estimate
    return InsufficientResources(
        f"{model.name} needs about {need} bytes plus a {settings.memory_margin_bytes}-byte "
        f"margin; at most {available} bytes of this machine's memory could be freed for it",
        code="insufficient_memory",
        hint="Free memory on this machine, unpin a model, or use a smaller model or context.",
        required=need,
        available=available,
    )
