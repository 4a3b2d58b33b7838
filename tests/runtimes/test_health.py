"""Provider status against real servers: every state and reason a user can meet (SPEC §3)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.instance_config import InstanceConfig
from tests.fakes.fixtures import FakeServer
from tests.fakes.lmstudio import LMStudioState
from tests.fakes.ollama import OllamaState
from tests.fakes.openai_compat import OpenAIState
from tests.fakes.plain_http import PlainHttpState
from tests.support.app_server import RunningApp
from tests.support.llama import llama_server
from tests.support.servers import black_hole, closed_port


def inst(provider: str, id: str, url: str, **kw: Any) -> InstanceConfig:
    return InstanceConfig(provider=provider, id=id, base_url=url, **kw)


def status_of(app: RunningApp, provider: str, id: str, refresh: bool = True) -> dict[str, Any]:
    data = app.http.get("/api/providers/status", params={"refresh": refresh}).json()
    return next(
        s for s in data["providers"] if s["provider"] == provider and s["instance_id"] == id
    )


@pytest.fixture
def llama_url(tiny_gguf: Path) -> Iterator[str]:
    """The genuine llama-server binary serving the tiny model (an external instance)."""
    with llama_server(tiny_gguf) as url:
        yield url


def test_every_state_in_one_parallel_check(
    modelyard: Callable[..., RunningApp],
    ollama_server: FakeServer[OllamaState],
    lmstudio_server: FakeServer[LMStudioState],
    openai_server: FakeServer[OpenAIState],
    plain_http_server: FakeServer[PlainHttpState],
    llama_url: str,
) -> None:
    openai_server.state.api_key = "sk-right"
    ollama_server.state.add_model("llama3.2")
    refused = closed_port()
    with black_hole() as hole:
        app = modelyard(
            [
                inst("ollama", "good", ollama_server.url),
                inst("llamacpp", "real", llama_url),
                inst("lmstudio", "lms", lmstudio_server.url),
                inst("openai_compat", "locked", openai_server.url, api_key="sk-wrong"),
                inst("ollama", "hole", f"http://127.0.0.1:{hole}"),
                inst("ollama", "closed", f"http://127.0.0.1:{refused}"),
                inst("ollama", "imposter", plain_http_server.url),
                inst("llamacpp", "ollama-port", ollama_server.url),
            ],
            # Long enough for a loaded CI machine to answer the good ones, short enough that
            # the black hole's timeout costs the test little.
            api_timeout_ms=2500,
        )
        data = app.http.get("/api/providers/status", params={"refresh": True}).json()
    by_id = {s["instance_id"]: s for s in data["providers"]}
    assert data["cache_ttl_ms"] + data["age_ms"] == 5000  # counts down to the next refresh

    good = by_id["good"]
    assert (good["state"], good["version"], good["api_responding"]) == ("RUNNING", "0.12.3", True)
    assert good["port_listening"] is True and good["latency_ms"] is not None
    assert by_id["real"]["state"] == "RUNNING" and by_id["real"]["models_loaded"] == 1
    assert by_id["lms"]["state"] == "RUNNING"

    locked = by_id["locked"]
    assert (locked["state"], locked["reason_code"]) == ("ERROR", "unauthorized")
    assert locked["hint"]
    hole_status = by_id["hole"]
    assert (hole_status["state"], hole_status["reason_code"]) == ("DEGRADED", "timeout")
    assert hole_status["port_listening"] is True and hole_status["api_responding"] is False
    closed = by_id["closed"]
    assert (closed["state"], closed["reason_code"]) == ("STOPPED", "connection_refused")
    assert closed["port_listening"] is False
    for wrong in ("imposter", "ollama-port"):
        assert (by_id[wrong]["state"], by_id[wrong]["reason_code"]) == ("ERROR", "wrong_service")
    for s in data["providers"]:
        assert s["hint"] or s["state"] == "RUNNING"


def test_health_check_never_loads_a_model_or_spends_tokens(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    ollama_server.state.add_model("llama3.2")
    app = modelyard([inst("ollama", "default", ollama_server.url)])
    for _ in range(3):
        assert status_of(app, "ollama", "default")["state"] == "RUNNING"
    paths = {entry.path for entry in ollama_server.log.entries()}
    spending = {"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/pull"}
    assert "/api/version" in paths and not paths & spending, paths
    assert not any(p.startswith("/v1/") for p in paths)


def test_cache_history_and_refresh(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    app = modelyard([inst("ollama", "default", ollama_server.url)], monitor=False)
    first = status_of(app, "ollama", "default", refresh=False)
    cached = status_of(app, "ollama", "default", refresh=False)
    assert cached["checked_at"] == first["checked_at"]  # served from the 5 s cache
    fresh = status_of(app, "ollama", "default", refresh=True)
    assert fresh["checked_at"] != first["checked_at"]
    for _ in range(12):
        status_of(app, "ollama", "default", refresh=True)
    checks = app.http.get("/api/providers/ollama/instances/default/history").json()["checks"]
    assert len(checks) == 10
    stamps = [c["checked_at"] for c in checks]
    assert stamps == sorted(stamps, reverse=True)


def test_cache_ttl_counts_down_to_the_next_refresh(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    """Seed 001's ``cache_ttl_ms``: the time left before the answer is checked again."""
    app = modelyard([inst("ollama", "default", ollama_server.url)], monitor=False)
    fresh = app.http.get("/api/providers/status", params={"refresh": True}).json()
    time.sleep(0.5)
    cached = app.http.get("/api/providers/status").json()
    assert cached["providers"][0]["checked_at"] == fresh["providers"][0]["checked_at"]
    assert cached["age_ms"] >= 500 + fresh["age_ms"]
    assert cached["cache_ttl_ms"] == 5000 - cached["age_ms"] < fresh["cache_ttl_ms"]


def test_state_change_is_published_and_legacy_names_are_accepted(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    from modelyard.providers.base import ProviderState

    assert ProviderState.parse("ready") is ProviderState.RUNNING
    assert ProviderState.parse("DISCONNECTED") is ProviderState.STOPPED
    app = modelyard([inst("ollama", "default", ollama_server.url)], monitor=False)
    sub = app.services.bus.subscribe(["provider.status"])
    assert status_of(app, "ollama", "default")["state"] == "RUNNING"
    ollama_server.state.version = "0.13.0"
    assert status_of(app, "ollama", "default")["version"] == "0.13.0"
    status_of(app, "ollama", "default")  # unchanged: no event
    versions = []
    while (event := sub.get_nowait()) is not None:
        versions.append(event.data["version"])
    assert versions == ["0.12.3", "0.13.0"]


def test_compat_status_and_health_shapes(
    modelyard: Callable[..., RunningApp], ollama_server: FakeServer[OllamaState]
) -> None:
    app = modelyard(
        [
            inst("ollama", "default", ollama_server.url),
            inst("lmstudio", "x", f"http://127.0.0.1:{closed_port()}"),
        ]
    )
    status = app.http.get("/api/models/status").json()
    assert status == {
        "ollama": {"running": True, "version": "0.12.3"},
        "lmstudio": {"running": False, "version": None},
    }
    health = app.http.get("/api/models/health").json()
    assert health == {"status": "degraded", "providers": {"ollama": True, "lmstudio": False}}
    rich = app.http.get("/api/providers/health").json()
    assert rich["status"] == "degraded"
    assert rich["providers"]["ollama"] == {
        "status": "healthy",
        "running": 1,
        "instances": 1,
        "errors": [],
    }
    assert rich["providers"]["lmstudio"]["status"] == "unavailable"


def test_compat_health_is_seed_000s_booleans_and_follows_the_runtime(
    modelyard: Callable[..., RunningApp],
    ollama_server: FakeServer[OllamaState],
    anthropic_server: Any,
) -> None:
    """A seed client's ``if (health.providers.ollama)`` is false while Ollama is down; a cloud
    API without a key is not listed; one with a key counts like any runtime."""
    down = f"http://127.0.0.1:{closed_port()}"
    app = modelyard(
        [
            inst("ollama", "default", down),
            inst("openai", "default", "https://api.openai.com"),  # no key: left out
            inst(
                "anthropic", "default", anthropic_server.url, api_key=anthropic_server.state.api_key
            ),
        ],
        monitor=False,
    )
    health = app.http.get("/api/models/health").json()
    assert health == {"status": "degraded", "providers": {"ollama": False, "anthropic": True}}

    made = app.http.post(
        "/api/providers/ollama/instances", json={"id": "box", "base_url": ollama_server.url}
    )
    assert made.status_code == 201, made.text
    app.http.get("/api/providers/status", params={"refresh": True})
    health = app.http.get("/api/models/health").json()
    assert health == {"status": "healthy", "providers": {"ollama": True, "anthropic": True}}
    rich = app.http.get("/api/providers/health").json()["providers"]
    assert (rich["ollama"]["running"], rich["ollama"]["instances"]) == (1, 2)
    assert "openai" not in rich


def test_cloud_instances_without_a_key_never_touch_the_network(
    modelyard: Callable[..., RunningApp], anthropic_server: Any
) -> None:
    app = modelyard(
        [
            inst("openai", "default", "https://api.openai.com"),
            inst("anthropic", "stub", anthropic_server.url, api_key=anthropic_server.state.api_key),
            inst("anthropic", "bad", anthropic_server.url, api_key="wrong"),
        ]
    )
    openai = status_of(app, "openai", "default")
    assert (openai["state"], openai["reason_code"]) == ("STOPPED", "missing_api_key")
    assert "OPENAI_API_KEY" in openai["hint"]
    assert status_of(app, "anthropic", "stub")["state"] == "RUNNING"
    bad = status_of(app, "anthropic", "bad")
    assert (bad["state"], bad["reason_code"]) == ("ERROR", "unauthorized")


def test_monitor_publishes_a_server_going_away(
    modelyard: Callable[..., RunningApp], tiny_gguf: Path
) -> None:
    with llama_server(tiny_gguf) as url:
        app = modelyard([inst("llamacpp", "ext", url)])
        sub = app.services.bus.subscribe(["provider.status"])
        assert status_of(app, "llamacpp", "ext")["state"] == "RUNNING"
    app.services.health.poke()
    deadline = time.monotonic() + 20
    states: list[str] = []
    while time.monotonic() < deadline and "STOPPED" not in states:
        event = sub.get_nowait()
        if event is None:
            time.sleep(0.05)
            continue
        states.append(event.data["state"])
    assert "STOPPED" in states
