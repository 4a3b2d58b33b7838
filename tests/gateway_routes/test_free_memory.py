"""Admission by measured free memory through the app, with the genuine llama-server: an idle
model is evicted when the machine (not the budget) is short, and a model that cannot fit is
refused with 507 ``insufficient_memory`` in each client's dialect, nothing loaded for it.

The free-memory reading is injected (this machine cannot be made short on demand): a machine
with ``room`` bytes whose only tenants are the models the scheduler has loaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anthropic
import ollama
import openai
import pytest

from modelyard.gateway.scheduling import ModelState
from tests.gateway_routes.test_scheduling import HI, App, estimate, models_dir, sdk
from tests.support.app_server import RunningApp
from tests.support.llama import LLAMA_SERVER


def machine_of(app: RunningApp, room: int) -> None:
    """Make ``app``'s scheduler read free memory from a machine of ``room`` bytes."""
    scheduler = app.services.gateway.scheduler

    def free() -> int:
        resident = (ModelState.LOADED, ModelState.UNLOADING)
        return room - sum(v.estimate_bytes for v in scheduler.snapshot() if v.state in resident)

    scheduler.settings = dataclasses.replace(scheduler.settings, free_memory=free)


def schedule(app: RunningApp) -> dict[str, dict[str, object]]:
    models = app.http.get("/api/models/schedule").json()["models"]
    return {m["key"].rsplit("/", 1)[-1]: m for m in models}


def test_an_idle_model_is_evicted_when_free_memory_is_short(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = models_dir(tmp_path, tiny_gguf, "a.gguf", "b.gguf")
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER, memory_margin_bytes=0)
    machine_of(app, estimate(models / "a.gguf") * 3 // 2)  # room for one; the budget: all
    app.http.post("/api/models/sync")
    client = sdk(app)
    client.chat.completions.create(model="a.gguf", messages=HI, max_tokens=2)
    client.chat.completions.create(model="b.gguf", messages=HI, max_tokens=2)
    now = schedule(app)
    assert now["b.gguf"]["state"] == "loaded" and now["a.gguf"]["state"] == "unloaded"
    assert now["a.gguf"]["last_eviction"]["reason"] == "evicted"  # type: ignore[index]
    catalog = {m["name"]: m["status"] for m in app.http.get("/api/models/list").json()["models"]}
    assert catalog == {"a.gguf": "available", "b.gguf": "loaded"}  # one server runs, not two


def test_a_model_that_cannot_fit_is_refused_in_every_dialect(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = models_dir(tmp_path, tiny_gguf, "a.gguf", "big.gguf")
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER, memory_margin_bytes=0)
    app.http.post("/api/models/sync")
    sdk(app).chat.completions.create(model="a.gguf", messages=HI, max_tokens=2)
    # Other programs took the rest: a's memory is all that could be freed, and big needs more.
    machine_of(app, estimate(models / "a.gguf") * 3 // 2)
    scheduler = app.services.gateway.scheduler
    scheduler.settings = dataclasses.replace(scheduler.settings, memory_margin_bytes=1 << 30)
    key = app.services.api_keys.cli_key

    with pytest.raises(openai.APIStatusError) as by_openai:
        sdk(app).chat.completions.create(model="big.gguf", messages=HI, max_tokens=2)
    assert by_openai.value.status_code == 507
    assert isinstance(by_openai.value.body, dict)
    assert by_openai.value.body["code"] == "insufficient_memory"

    claude = anthropic.Anthropic(base_url=app.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as by_anthropic:
        claude.messages.create(model="big.gguf", max_tokens=2, messages=HI)  # type: ignore[arg-type]
    assert by_anthropic.value.status_code == 507

    llama = ollama.Client(host=app.url + "/ollama", headers={"Authorization": f"Bearer {key}"})
    with pytest.raises(ollama.ResponseError) as by_ollama:
        llama.chat(model="big.gguf", messages=HI, stream=False)
    assert by_ollama.value.status_code == 507

    now = schedule(app)
    assert now["big.gguf"]["state"] == "unloaded" and now["big.gguf"]["queued"] == 0
    assert "big.gguf" in str(now["big.gguf"]["last_error"])  # the model shows why
    assert now["a.gguf"]["state"] == "loaded"  # nothing evicted for a load that cannot be
    catalog = {m["name"]: m["status"] for m in app.http.get("/api/models/list").json()["models"]}
    assert catalog == {"a.gguf": "loaded", "big.gguf": "available"}
