"""A provider is one module and one line: the test-only Echo provider
(tests/support/echo_provider.py), registered with one ``registry.register`` call, shows up in
provider status, the catalog and chat through the real app and API; the kinds the API accepts
are the registry's; capabilities decide what can be done; ``GET /api/providers`` and ``/kinds``
show labels and capabilities."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from modelyard.config import load_settings
from modelyard.errors import ConfigError
from modelyard.instance_config import InstanceConfig
from modelyard.providers.registry import registry
from tests.fakes.echo import VERSION, EchoState, create_echo_app
from tests.fakes.fixtures import FakeServer, serve
from tests.support.app_server import RunningApp
from tests.support.chat import send, text_of
from tests.support.echo_provider import EchoProvider
from tests.support.servers import closed_port

App = Callable[..., RunningApp]
BUILT_IN = ["ollama", "llamacpp", "lmstudio", "openai_compat", "openai", "anthropic"]


@pytest.fixture
def echo_server() -> Iterator[FakeServer[EchoState]]:
    registry.register(EchoProvider())  # all it takes to add a provider
    state = EchoState()
    try:
        with serve(create_echo_app(state), state) as server:
            yield server
    finally:
        registry.unregister("echo")


def echo_instance(url: str, id: str = "default") -> InstanceConfig:
    return InstanceConfig(provider="echo", id=id, base_url=url)


def problem(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code, resp.text


def test_a_registered_provider_shows_up_in_status_catalog_and_chat(
    modelyard: App, echo_server: FakeServer[EchoState]
) -> None:
    app = modelyard([echo_instance(echo_server.url)])

    statuses = app.http.get("/api/providers/status", params={"refresh": "true"}).json()
    (status,) = statuses["providers"]
    assert (status["provider"], status["instance_id"], status["state"]) == (
        "echo",
        "default",
        "RUNNING",
    )
    assert status["version"] == VERSION and status["api_responding"]

    assert app.http.post("/api/models/sync").json()["errors"] == []
    listed = app.http.get("/api/models/list").json()["models"]
    assert {(m["provider"], m["instance_id"], m["name"]) for m in listed} == {
        ("echo", "default", "parrot"),
        ("echo", "default", "mirror"),
    }
    found = app.http.get("/api/models/search", params={"provider": "echo", "q": "parr"}).json()
    assert [m["name"] for m in found["models"]] == ["parrot"]

    created = app.http.post("/api/conversations", json={"provider": "echo", "model": "parrot"})
    assert created.status_code == 201, created.text
    events = send(app.http, created.json()["id"], content="Polly wants a cracker")
    assert [e["text"] for e in events if e["type"] == "token"] == [
        "Polly ",
        "wants ",
        "a ",
        "cracker",
    ]
    assert text_of(events) == "Polly wants a cracker"
    done = events[-1]
    assert done["type"] == "done" and done["provider"] == "echo"
    assert done["usage"] == {"prompt_tokens": 4, "completion_tokens": 4}
    sent = echo_server.state.log.for_path("/chat")[-1].json()
    assert sent["model"] == "parrot"
    assert sent["messages"][-1] == {"role": "user", "content": "Polly wants a cracker"}


def test_a_registered_provider_that_is_down_says_how_to_start_it(
    modelyard: App, echo_server: FakeServer[EchoState]
) -> None:
    app = modelyard([echo_instance(f"http://127.0.0.1:{closed_port()}")])
    (status,) = app.http.get("/api/providers/status", params={"refresh": "true"}).json()[
        "providers"
    ]
    assert (status["state"], status["reason_code"]) == ("STOPPED", "connection_refused")
    assert EchoProvider.start_hint in status["hint"]
    cid = app.http.post("/api/conversations", json={"provider": "echo", "model": "parrot"})
    error = send(app.http, cid.json()["id"], content="Hi")[-1]
    assert (error["type"], error["code"]) == ("error", "connection_refused")


def test_the_kinds_accepted_are_the_registered_ones(
    modelyard: App, echo_server: FakeServer[EchoState], tmp_path: Any
) -> None:
    app = modelyard()
    body = {"id": "box", "base_url": echo_server.url}
    created = app.http.post("/api/providers/echo/instances", json=body)
    assert created.status_code == 201, created.text
    assert (created.json()["label"], created.json()["provider"]) == ("Echo", "echo")
    config = tmp_path / "modelyard.toml"
    config.write_text(
        f"[[instances]]\nprovider = 'echo'\nid = 'a'\nbase_url = '{echo_server.url}'\n"
    )
    assert load_settings({"MODELYARD_CONFIG": str(config)}).instances == [
        echo_instance(echo_server.url, "a")
    ]

    registry.unregister("echo")  # the fixture's teardown tolerates it being gone
    problem(app.http.post("/api/providers/echo/instances", json=body), 404, "unknown_provider")
    problem(app.http.get("/api/providers/echo/instances/box/status"), 404, "unknown_provider")
    with pytest.raises(ConfigError, match="unknown provider 'echo'"):
        load_settings({"MODELYARD_CONFIG": str(config)})
    with pytest.raises(ValidationError):
        echo_instance(echo_server.url)


def test_capabilities_decide_what_can_be_done(
    modelyard: App, echo_server: FakeServer[EchoState]
) -> None:
    app = modelyard([echo_instance(echo_server.url)])
    app.http.post("/api/models/sync")
    ref = {"provider": "echo", "name": "parrot"}
    problem(app.http.post("/api/models/start", json=ref), 409, "not_supported")
    problem(app.http.post("/api/models/stop", json=ref), 409, "not_supported")
    problem(app.http.delete("/api/models/echo/parrot"), 409, "not_supported")
    pull = {"model_name": "parrot", "provider": "echo"}
    problem(app.http.post("/api/models/pull", json=pull), 400, "unsupported_provider")
    managed = {"id": "mine", "base_url": "http://127.0.0.1:9", "managed": True}
    problem(app.http.post("/api/providers/echo/instances", json=managed), 400, "not_manageable")


def test_kinds_and_instances_carry_labels_and_capabilities(modelyard: App) -> None:
    app = modelyard(
        [
            InstanceConfig(provider="ollama", id="default", base_url="http://127.0.0.1:11434"),
            InstanceConfig(provider="anthropic", id="default", base_url="http://127.0.0.1:9"),
        ]
    )
    kinds = {k["kind"]: k for k in app.http.get("/api/providers/kinds").json()["kinds"]}
    assert list(kinds) == BUILT_IN
    labels = {kind: k["label"] for kind, k in kinds.items()}
    assert labels == {
        "ollama": "Ollama",
        "llamacpp": "llama.cpp",
        "lmstudio": "LM Studio",
        "openai_compat": "OpenAI-compatible",
        "openai": "OpenAI",
        "anthropic": "Anthropic",
    }
    can = {kind: {f for f, on in k["capabilities"].items() if on} for kind, k in kinds.items()}
    assert can == {
        "ollama": {
            "manageable",
            "loads_models",
            "deletes_models",
            "pulls",
            "embeddings",
            "owns_memory",
        },
        "llamacpp": {"manageable", "embeddings", "exact_tokens", "runs_gguf"},
        "lmstudio": {"loads_models", "embeddings", "owns_memory"},
        "openai_compat": {"embeddings"},
        "openai": {"needs_api_key", "embeddings", "cloud"},
        "anthropic": {"needs_api_key", "cloud"},
    }

    instances = app.http.get("/api/providers").json()["instances"]
    assert [(i["provider"], i["label"]) for i in instances] == [
        ("ollama", "Ollama"),
        ("anthropic", "Anthropic"),
    ]
    assert instances[0]["capabilities"] == kinds["ollama"]["capabilities"]
    assert instances[1]["capabilities"]["needs_api_key"] is True
