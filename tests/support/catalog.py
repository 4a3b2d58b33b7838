"""Helpers shared by the catalog, lifecycle, models API and CLI tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from modelyard.events import Subscription
from modelyard.instance_config import InstanceConfig
from tests.support.app_server import RunningApp
from tests.support.llama import LLAMA_SERVER

__all__ = ["LLAMA_SERVER", "assert_problem", "catalog", "drain", "instance", "names", "wait_for"]

T = TypeVar("T")


def instance(provider: str, url: str, id: str = "default", **extra: Any) -> InstanceConfig:
    return InstanceConfig(provider=provider, id=id, base_url=url, **extra)


def catalog(app: RunningApp) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every model of the catalog by (provider, instance_id, name)."""
    models = app.http.get("/api/models/list").json()["models"]
    return {(m["provider"], m["instance_id"], m["name"]): m for m in models}


def names(app: RunningApp, provider: str | None = None) -> set[str]:
    return {key[2] for key in catalog(app) if provider is None or key[0] == provider}


def wait_for(check: Callable[[], T | None], timeout: float = 30, what: str = "a condition") -> T:
    """Poll ``check`` until it returns something truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def drain(sub: Subscription) -> list[tuple[str, dict[str, Any]]]:
    """The events queued on ``sub``: (type, data)."""
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append((event.type, event.data))
    return out


def assert_problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    """A problem+json answer with this status and code, and a hint for people."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    assert body["hint"] and body["detail"], body
    return body


def wait_quiet(app: RunningApp, quiet_s: float = 1.0, timeout: float = 60) -> None:
    """Wait until no background catalog sync has been scheduled or running for ``quiet_s``
    (the first status checks after a start each schedule one): a test that changes things
    behind modelyard's back then sees them in its own sync, not in one racing it."""
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if app.services.catalog.busy:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.05)
    raise AssertionError(f"background catalog syncs did not stop within {timeout} s")
