"""The scheduler as the one load path, through the app: eviction within a small
``memory_budget_bytes``, a start from the Models API and gateway requests sharing one load,
a stop that waits for the answer in flight; and the gateway's keys (Bearer, x-api-key)."""

from __future__ import annotations

import concurrent.futures
import shutil
from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from modelyard.gguf.metadata import read_gguf
from modelyard.models.memory import default_context
from modelyard.runtimes.resources import estimate_memory
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem
from tests.support.llama import LLAMA_SERVER
from tests.support.tiny_gguf import write_tiny_gguf

HI = [{"role": "user", "content": "hi"}]
App = Callable[..., RunningApp]


def estimate(path: Path) -> int:
    """What modelyard estimates a GGUF file to need (the scheduler's figure)."""
    info = read_gguf(path)
    ctx = default_context(info, 4096)
    return estimate_memory(info, file_size=path.stat().st_size, ctx_size=ctx).total


def sdk(app: RunningApp, key: str = "") -> openai.OpenAI:
    key = key or app.services.api_keys.cli_key  # the SDK insists on a key, which is judged
    return openai.OpenAI(base_url=app.url + "/v1", api_key=key, max_retries=0)


def states(app: RunningApp) -> dict[str, dict[str, object]]:
    return {m.id: m.model_dump()["modelyard"] for m in sdk(app).models.list().data}


def models_dir(tmp_path: Path, tiny_gguf: Path, *names: str) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for name in names:
        shutil.copy(tiny_gguf, models / name)
    return models


def test_a_model_is_evicted_for_another_within_the_memory_budget(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = models_dir(tmp_path, tiny_gguf, "a.gguf", "b.gguf")
    budget = estimate(models / "a.gguf") * 3 // 2  # room for one
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER, memory_budget_bytes=budget)
    app.http.post("/api/models/sync")
    client = sdk(app)
    client.chat.completions.create(model="a.gguf", messages=HI, max_tokens=2)
    assert states(app)["a.gguf"]["state"] == "loaded"

    client.chat.completions.create(model="b.gguf", messages=HI, max_tokens=2)
    now = states(app)
    assert now["b.gguf"]["state"] == "loaded"
    assert now["a.gguf"]["state"] == "unloaded" and now["a.gguf"]["last_eviction"] == "evicted"
    catalog = {m["name"]: m["status"] for m in app.http.get("/api/models/list").json()["models"]}
    assert catalog == {"a.gguf": "available", "b.gguf": "loaded"}  # one server runs, not two

    too_big = modelyard(models_dir=models, llama_server=LLAMA_SERVER, memory_budget_bytes=1024)
    too_big.http.post("/api/models/sync")
    refused = httpx.post(
        too_big.url + "/v1/chat/completions", json={"model": "a.gguf", "messages": HI}
    )
    assert refused.status_code == 507 and refused.json()["error"]["code"] == "model_too_large"


def test_the_models_api_and_the_gateway_share_one_load(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = models_dir(tmp_path, tiny_gguf, "tiny.gguf")
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER)
    app.http.post("/api/models/sync")
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}
    client = sdk(app)

    def ask() -> int:
        answer = client.chat.completions.create(model="tiny.gguf", messages=HI, max_tokens=2)
        return len(answer.choices)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        started = pool.submit(app.http.post, "/api/models/start", json=ref)
        answers = [pool.submit(ask) for _ in range(5)]
        assert [a.result() for a in answers] == [1] * 5
        model = started.result().json()
    assert model["status"] == "loaded"
    servers = [
        i for i in app.http.get("/api/providers").json()["instances"] if i["origin"] == "model"
    ]
    assert len(servers) == 1  # one load, one server
    assert states(app)["tiny.gguf"]["state"] == "loaded"

    stopped = app.http.post("/api/models/stop", json=ref)
    assert stopped.json()["status"] == "available"
    assert states(app)["tiny.gguf"]["state"] == "unloaded"  # the scheduler stopped it
    assert states(app)["tiny.gguf"]["last_eviction"] == "requested"


def test_gateway_keys_as_bearer_and_x_api_key(
    modelyard: App, tmp_path: Path, tiny_gguf: Path
) -> None:
    models = models_dir(tmp_path, tiny_gguf, "tiny.gguf")
    admin = "admin-secret"
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER, api_key=admin, local_trust="none")
    admin_headers = {"Authorization": f"Bearer {admin}"}
    app.http.post("/api/models/sync", headers=admin_headers)
    keys = {}
    for scope in ("inference", "read"):
        made = app.http.post(
            "/api/keys", json={"name": scope, "scopes": [scope]}, headers=admin_headers
        )
        keys[scope] = made.json()["key"]

    assert sdk(app, keys["inference"]).models.list().data
    message = anthropic.Anthropic(
        base_url=app.url, api_key=keys["inference"], max_retries=0
    ).messages.create(model="tiny.gguf", max_tokens=2, messages=HI)  # sent as x-api-key
    assert message.usage.output_tokens == 2

    with pytest.raises(openai.AuthenticationError) as raised:
        sdk(app, "sk-anything").models.list()  # a placeholder is no key: not trusted here
    assert isinstance(raised.value.body, dict) and raised.value.body["code"] == "unauthorized"
    with pytest.raises(openai.AuthenticationError):
        sdk(app, "my_wrong").models.list()
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk(app, keys["read"]).chat.completions.create(model="tiny.gguf", messages=HI)
    # The SDK keeps the ``error`` member of the body: OpenAI's own shape, code inside.
    assert denied.value.body == {
        "message": "this key lacks the 'inference' scope",
        "type": "permission_error",
        "param": None,
        "code": "insufficient_scope",
    }
    ollama_refusal = httpx.get(app.url + "/ollama/api/tags")
    assert_problem(ollama_refusal, 401, "unauthorized")
    assert isinstance(ollama_refusal.json()["error"], str)  # Ollama's shape


def test_an_embedding_model_with_a_larger_body_than_the_api_takes(
    modelyard: App, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    write_tiny_gguf(models / "e.gguf", pooling=True)
    app = modelyard(models_dir=models, llama_server=LLAMA_SERVER, max_body_bytes=4096)
    app.http.post("/api/models/sync")
    texts = ["word " * 40] * 50  # 10 kB: over max_body_bytes, within gateway_max_body_bytes
    vectors = sdk(app).embeddings.create(model="e.gguf", input=texts)
    assert len(vectors.data) == 50
    too_big_for_the_api = app.http.post("/api/models/sync", content=b"x" * 5000)
    assert_problem(too_big_for_the_api, 413, "body_too_large")
