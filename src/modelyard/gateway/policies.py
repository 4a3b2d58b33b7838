"""The scheduler's settings and each model's policy, from modelyard's configuration.

``[models."name"]`` tables override the gateway-wide settings for one model; the name is a
qualified ``provider/instance/name`` or a plain catalog name (the qualified one wins).
"""

from __future__ import annotations

from collections.abc import Callable

import psutil

from modelyard.config import ModelSettings, Settings
from modelyard.gateway.names import key_of
from modelyard.gateway.scheduling import ModelPolicy, SchedulerSettings
from modelyard.runtimes.resources import free_memory


def scheduler_settings(settings: Settings) -> SchedulerSettings:
    """Limits for every model together; the budget defaults to the machine's memory, and a
    load also needs room in the memory measured free (with the same margin as a start)."""
    budget = settings.memory_budget_bytes or int(psutil.virtual_memory().total)
    return SchedulerSettings(
        memory_budget_bytes=budget,
        free_memory=free_memory,
        memory_margin_bytes=settings.memory_margin_bytes,
        max_loaded=settings.max_loaded,
        queue_timeout_s=settings.queue_timeout_s,
        load_timeout_s=settings.load_timeout_s,
        unload_timeout_s=max(30.0, settings.stop_grace_s + 5.0),
    )


def model_settings(settings: Settings, qualified_name: str) -> ModelSettings | None:
    """The ``[models."name"]`` table for a model, under its qualified or its plain name."""
    found = settings.models.get(qualified_name)
    return found if found is not None else settings.models.get(key_of(qualified_name).name)


def model_policy(settings: Settings) -> Callable[[str], ModelPolicy]:
    """How each model is kept: its table's values over the gateway-wide ones."""
    pinned = set(settings.pinned_models)

    def policy_for(qualified_name: str) -> ModelPolicy:
        own = model_settings(settings, qualified_name) or ModelSettings()
        ttl = own.ttl_s if own.ttl_s is not None else settings.model_ttl_s
        return ModelPolicy(
            ttl_s=ttl or None,
            min_residency_s=(
                own.min_residency_s if own.min_residency_s is not None else settings.min_residency_s
            ),
            max_concurrency=own.max_concurrency or settings.max_concurrency,
            max_queue=own.max_queue if own.max_queue is not None else settings.max_queue,
            pinned=own.pinned or qualified_name in pinned or key_of(qualified_name).name in pinned,
        )

    return policy_for
