"""The server errors an operation is designed to give, declared in its OpenAPI responses.

A 5xx from modelyard is either a bug (500 ``internal_error``) or a designed answer about
something outside it — a provider that does not answer, a model that does not fit, the Hub
unreachable — with a stable ``code``. Each operation lists its designed answers per status
under ``x-codes``, so clients (and the fuzz run, ``tests/fuzz/hooks.py``) can tell them from
bugs.
"""

from __future__ import annotations

from typing import Any

_TITLES = {502: "Upstream error", 503: "Unavailable", 507: "Insufficient resources"}


def designed(**codes: int) -> dict[int | str, dict[str, Any]]:
    """``designed(provider_unreachable=503, start_failed=502)`` → the ``responses`` entries."""
    by_status: dict[int, list[str]] = {}
    for code, status in codes.items():
        by_status.setdefault(status, []).append(code)
    return {
        status: {
            "description": f"{_TITLES.get(status, 'Server error')}: {', '.join(names)}",
            "content": {"application/problem+json": {}},
            "x-codes": names,
        }
        for status, names in sorted(by_status.items())
    }


# A model's runtime: it may be down, fail to start, or lack the memory for the model.
_RUNTIME = {
    "provider_unreachable": 503,
    "start_timeout": 503,
    "stop_failed": 503,
    "upstream_error": 502,
    "start_failed": 502,
    "insufficient_memory": 507,
}
# Fetching a model: the Hub may be unreachable or fail, the disk may be too small.
_SOURCE = {"hf_unreachable": 502, "hf_error": 502, "insufficient_disk_space": 507}
MODEL_RUNTIME = designed(**_RUNTIME)
MODEL_SOURCE = designed(**_SOURCE)
MODEL_RECREATE = designed(**_RUNTIME, **_SOURCE)
# A managed process: it may fail to start, load too slowly or refuse to die.
MANAGED_PROCESS = designed(
    start_failed=502, start_timeout=503, stop_failed=503, docker_unavailable=503, docker_error=502
)
