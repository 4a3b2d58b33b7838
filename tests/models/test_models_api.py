"""The models API's shapes (SPEC §8 compatibility endpoints), the recommended list, system
resources, and bad input → 4xx problem+json with a stable code."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from modelyard.models.recommended import recommended
from tests.fakes.fixtures import serve
from tests.fakes.ollama import OllamaState, create_ollama_app
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.catalog import assert_problem, catalog, instance, wait_for

FIELDS = {
    "name",
    "provider",
    "instance_id",
    "size",
    "family",
    "parameter_size",
    "quantization",
    "format",
    "digest",
    "modified_at",
    "mode",
    "source",
    "status",
    "loaded",
    "context_length",
    "path",
    "meta",
    "synced_at",
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[RunningApp]:
    """One modelyard with an Ollama stand-in and a GGUF file, shared by the module."""
    state = OllamaState()
    state.add_model("llama3.2:3b")
    state.add_model("nomic-embed-text", family="nomic-bert")
    tmp = tmp_path_factory.mktemp("models-api")
    models = tmp / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "tiny.gguf")
    with serve(create_ollama_app(state), state) as ollama:
        settings = make_settings(
            tmp, [instance("ollama", ollama.url)], models_dir=models, monitor=False
        )
        with running_app(settings) as running:
            running.http.post("/api/models/sync")
            yield running


def test_list_has_every_field_of_the_spec(app: RunningApp) -> None:
    body = app.http.get("/api/models/list").json()
    assert set(body) == {"models"}
    assert {m["name"] for m in body["models"]} == {
        "llama3.2:3b",
        "nomic-embed-text:latest",
        "tiny.gguf",
    }
    for model in body["models"]:
        assert set(model) == FIELDS


def test_search_page_shape(app: RunningApp) -> None:
    page = app.http.get("/api/models/search", params={"q": "LLAMA", "page_size": 1}).json()
    assert set(page) == {"models", "total", "page", "page_size"}
    assert (page["total"], page["page"], page["page_size"]) == (1, 1, 1)
    assert page["models"][0]["name"] == "llama3.2:3b"


def test_available_marks_installed_recommended_models(app: RunningApp) -> None:
    items = app.http.get("/api/models/available").json()["models"]
    assert len(items) == len(recommended()) >= 10
    by_name = {i["name"]: i for i in items}
    assert by_name["llama3.2:3b"]["installed"] is True
    assert by_name["nomic-embed-text"]["installed"] is True  # ":latest" implied
    assert by_name["qwen2.5:0.5b"]["installed"] is False
    for item in items:
        assert {"id", "name", "provider", "size", "mode", "description", "tags", "download"} <= set(
            item
        )
        assert item["size"] > 0 and item["mode"] in ("llm", "embed", "rerank")
        assert item["download"]["source"] in ("ollama", "hf")
    gguf = [i for i in items if i["provider"] == "llamacpp"]
    assert gguf and all(i["name"].startswith("hf/") for i in gguf)
    # Each download body as the list ships it: no null fields, no "force" added.
    shipped = resources.files("modelyard").joinpath("data/recommended.json").read_text("utf-8")
    assert [i["download"] for i in items] == [e["download"] for e in json.loads(shipped)]


def test_install_starts_the_recommended_download(app: RunningApp) -> None:
    created = app.http.post("/api/models/install", json={"id": "qwen2.5-0.5b"})
    assert created.status_code == 200, created.text
    task = created.json()
    assert (task["source"], task["model_name"], task["instance_id"]) == (
        "ollama",
        "qwen2.5:0.5b",
        "default",
    )
    # The stand-in's registry does not have it: the catalog shows the failure.
    failed = wait_for(
        lambda: (
            (m := catalog(app).get(("ollama", "default", "qwen2.5:0.5b")))
            and m["status"] == "failed"
            and m
        ),
        what="the failed pull",
    )
    assert "file does not exist" in failed["meta"]["error"]
    assert_problem(
        app.http.post("/api/models/install", json={"id": "nope"}), 404, "recommended_not_found"
    )
    elsewhere = app.http.post(
        "/api/models/install", json={"id": "llama3.2-1b", "instance_id": "box"}
    )
    assert_problem(elsewhere, 404, "instance_not_found")


def test_details_of_a_gguf_model(app: RunningApp) -> None:
    details = app.http.get(
        "/api/models/details", params={"provider": "llamacpp", "name": "tiny.gguf"}
    )
    assert details.status_code == 200
    body = details.json()
    assert body["gguf"]["architecture"] == "llama" and body["gguf"]["has_chat_template"] is True
    assert body["gguf"]["context_length"] == 2048 and body["gguf"]["block_count"] == 2
    estimate = body["estimate"]
    assert estimate["weights"] == body["size"] and estimate["ctx_size"] == 2048
    assert estimate["kv_cache"] == 2 * 2048 * 2 * (16 + 16) * 2  # layers·ctx·kv heads·(k+v)·f16
    assert estimate["total"] == estimate["weights"] + estimate["kv_cache"] + estimate["compute"]
    assert body["fit"]["fits"] is True and body["servers"] == []


def test_system_resources(app: RunningApp) -> None:
    res = app.http.get("/api/system/resources").json()
    assert {"disk", "memory", "cpu", "gpus", "models", "models_dir", "models_memory"} <= set(res)
    assert res["disk"]["total"] >= res["disk"]["free"] > 0
    assert res["memory"]["total"] >= res["memory"]["available"] > 0
    assert res["cpu"]["count"] >= 1 and res["gpus"] == []  # no NVIDIA driver here
    assert res["models"] == [] and res["models_memory"] == 0


BAD: list[Any] = [
    pytest.param(
        "post",
        "/api/models/start",
        {"provider": "nope", "name": "x"},
        404,
        "unknown_provider",
        id="start-unknown-provider",
    ),
    pytest.param(
        "delete", "/api/models/nope/x", None, 404, "unknown_provider", id="delete-unknown-provider"
    ),
    pytest.param(
        "post",
        "/api/models/start",
        {"provider": "llamacpp", "name": "../../etc/passwd"},
        400,
        "invalid_path",
        id="traversal",
    ),
    pytest.param(
        "post",
        "/api/models/stop",
        {"provider": "llamacpp", "name": "/etc/passwd"},
        400,
        "invalid_path",
        id="absolute-path",
    ),
    pytest.param(
        "delete",
        "/api/models/llamacpp/sub/%2E%2E/%2E%2E/x.gguf",
        None,
        400,
        "invalid_path",
        id="delete-traversal",
    ),
    pytest.param(
        "delete", "/api/models/llamacpp/x%00.gguf", None, 400, "invalid_model_name", id="delete-nul"
    ),
    pytest.param(
        "post",
        "/api/models/start",
        {"provider": "ollama", "name": "bad name"},
        400,
        "invalid_model_name",
        id="bad-ollama-name",
    ),
    pytest.param(
        "post",
        "/api/models/start",
        {"provider": "ollama", "name": "x", "extra": 1},
        422,
        "validation_error",
        id="unknown-field",
    ),
    pytest.param(
        "post",
        "/api/models/start",
        {"provider": "ollama"},
        422,
        "validation_error",
        id="missing-name",
    ),
    pytest.param(
        "post",
        "/api/models/start",
        {"provider": "llamacpp", "name": "tiny.gguf", "ctx_size": 5},
        422,
        "validation_error",
        id="tiny-context",
    ),
    pytest.param(
        "post",
        "/api/models/batch",
        {"action": "start", "models": []},
        422,
        "validation_error",
        id="empty-batch",
    ),
    pytest.param(
        "post",
        "/api/models/batch",
        {"action": "explode", "models": [{"provider": "ollama", "name": "x"}]},
        422,
        "validation_error",
        id="unknown-batch-action",
    ),
    pytest.param(
        "post",
        "/api/models/batch",
        {"action": "stop", "models": [{"provider": "ollama", "name": "x"}] * 501},
        422,
        "validation_error",
        id="batch-too-big",
    ),
    pytest.param(
        "get",
        "/api/models/details?provider=llamacpp&name=missing.gguf",
        None,
        404,
        "model_not_found",
        id="details-missing",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD)
def test_bad_input_is_a_problem_never_a_500(
    app: RunningApp, method: str, path: str, body: Any, status: int, code: str
) -> None:
    kwargs = {"json": body} if body is not None else {}
    assert_problem(app.http.request(method.upper(), path, **kwargs), status, code)


def test_malformed_json_is_a_problem(app: RunningApp) -> None:
    resp = app.http.post(
        "/api/models/start", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(resp, 400, "invalid_json")


def test_mutations_are_audited_and_documented(app: RunningApp) -> None:
    app.http.post("/api/models/sync")
    entries = app.http.get("/api/audit").json()["entries"]
    assert any(e["path"] == "/api/models/sync" and e["status"] == 200 for e in entries)
    paths = app.http.get("/openapi.json").json()["paths"]
    for path in (
        "/api/models/list",
        "/api/models/search",
        "/api/models/available",
        "/api/models/sync",
        "/api/models/start",
        "/api/models/stop",
        "/api/models/recreate",
        "/api/models/batch",
        "/api/models/details",
        "/api/models/{provider}/{model_name}",
        "/api/system/resources",
    ):
        assert path in paths, path


def test_the_list_shows_a_change_at_once(tmp_path: Path, tiny_gguf: Path) -> None:
    """The list answers from an encoded copy while nothing changes, and never serves it stale."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(tiny_gguf, models / "a.gguf")
    settings = make_settings(tmp_path, [], models_dir=models, monitor=False)
    with running_app(settings) as app:

        def names() -> set[str]:
            return {m["name"] for m in app.http.get("/api/models/list").json()["models"]}

        app.http.post("/api/models/sync").raise_for_status()
        assert names() == names() == {"a.gguf"}
        shutil.copy(tiny_gguf, models / "b.gguf")
        app.http.post("/api/models/sync").raise_for_status()
        assert names() == {"a.gguf", "b.gguf"}
        (models / "a.gguf").unlink()
        app.http.post("/api/models/sync").raise_for_status()
        assert names() == {"b.gguf"}
