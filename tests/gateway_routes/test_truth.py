"""What the gateway shows of itself: the scheduler's view (``GET /api/models/schedule``,
``model.schedule`` events), the request log and ``gateway.request`` events (no prompt),
Prometheus' histograms and the eviction counter."""

from __future__ import annotations

import logging

import openai
import pytest

from tests.gateway_routes.conftest import Stack
from tests.support.catalog import drain

SECRET = "a prompt nobody may read"


def test_a_request_is_logged_counted_and_published_without_its_prompt(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    app = stack.app
    sub = app.services.bus.subscribe(["gateway.request", "model.schedule"])
    sdk = openai.OpenAI(
        base_url=app.url + "/v1", api_key=app.services.api_keys.cli_key, max_retries=0
    )
    with caplog.at_level(logging.INFO, logger="modelyard.gateway.requests"):
        sdk.chat.completions.create(
            model="small", messages=[{"role": "user", "content": SECRET}], max_tokens=3
        )
    seen = drain(sub)
    (request,) = [data for kind, data in seen if kind == "gateway.request"]
    assert request["model"] == "small" and request["key"] == "llamacpp/local/tiny.gguf"
    assert request["status"] == 200 and request["completion_tokens"] == 3
    assert request["ttft_ms"] is not None and request["caller"] != "anonymous"
    schedules = [data for kind, data in seen if kind == "model.schedule"]
    assert schedules and schedules[-1]["key"] == "llamacpp/local/tiny.gguf"
    assert schedules[-1]["in_flight"] == 0
    (line,) = [r.getMessage() for r in caplog.records if "model=small" in r.getMessage()]
    assert "status=200" in line and "tokens=" in line
    assert SECRET not in caplog.text and SECRET not in str(seen)

    schedule = app.http.get("/api/models/schedule").json()["models"]
    tiny = next(m for m in schedule if m["key"] == "llamacpp/local/tiny.gguf")
    assert tiny["state"] == "loaded" and tiny["estimate_bytes"] > 0

    metrics = app.http.get("/metrics").text
    for name in (
        "modelyard_gateway_ttft_seconds_bucket",
        "modelyard_gateway_queue_wait_seconds_bucket",
        "modelyard_model_load_duration_seconds_bucket",
    ):
        assert f'{name}{{le="+Inf",model="llamacpp/local/tiny.gguf"}}' in metrics
    assert 'modelyard_gateway_requests_total{model="llamacpp/local/tiny.gguf",status="200"}' in (
        metrics
    )


def test_an_unload_is_counted_with_its_reason(stack: Stack) -> None:
    app = stack.app
    ref = {"provider": "llamacpp", "name": "embed/mini.gguf"}
    assert app.http.post("/api/models/start", json=ref).json()["status"] == "loaded"
    assert app.http.post("/api/models/stop", json=ref).json()["status"] == "available"
    schedule = app.http.get("/api/models/schedule").json()["models"]
    mini = next(m for m in schedule if m["key"] == "llamacpp/local/embed/mini.gguf")
    assert mini["state"] == "unloaded" and mini["last_eviction"]["reason"] == "requested"
    metrics = app.http.get("/metrics").text
    assert (
        'modelyard_model_evictions_total{model="llamacpp/local/embed/mini.gguf",'
        'reason="requested"} 1.0'
    ) in metrics
