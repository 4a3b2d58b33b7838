"""Commands and key variables come from the operator's config file, never from the API; a key
given through the API stays with the server it was given for; a key no header can carry is
refused where it is given, and one that got in anyway is its instance's error alone (SPEC §12;
issue 19, holes 1, 2 and 9)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from modelyard.config import load_settings
from modelyard.errors import ConfigError
from modelyard.instance_config import InstanceConfig
from modelyard.store.tables import InstanceRow
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.chat import send

OLLAMA = "/api/providers/ollama/instances"
COMPAT = "/api/providers/openai_compat/instances"


def _code(resp: Any) -> tuple[int, str | None]:
    kind = resp.headers.get("content-type", "")
    return resp.status_code, resp.json().get("code") if "json" in kind else None


@pytest.mark.parametrize("keyed", [False, True], ids=["own-user", "admin-key"])
def test_the_api_refuses_commands_and_key_variables_whoever_calls(
    modelyard: Callable[..., RunningApp], tmp_path: Path, keyed: bool
) -> None:
    settings: dict[str, Any] = {"monitor": False}
    if keyed:  # an admin key, sent from anywhere: judged by the key alone
        settings.update(api_key="admin-secret", local_trust="none")
    app = modelyard(**settings)
    headers = {"Authorization": "Bearer admin-secret"} if keyed else {}
    proof = tmp_path / "proof.txt"
    attack = ["/bin/sh", "-c", f"id > {proof}"]
    url = "http://127.0.0.1:9"
    refused = [
        {"id": "a", "base_url": url, "managed": True, "command": attack},
        {"id": "b", "base_url": url, "api_key_env": "HF_TOKEN"},
        {"id": "c", "base_url": url, "command": [], "api_key_env": ""},  # even empty ones
    ]
    for body in refused:
        resp = app.http.post(OLLAMA, json=body, headers=headers)
        assert _code(resp) == (400, "config_file_only"), resp.text
    created = app.http.post(OLLAMA, json={"id": "d", "base_url": url}, headers=headers)
    assert created.status_code == 201
    for change in ({"command": attack}, {"api_key_env": "OPENAI_API_KEY"}):
        resp = app.http.patch(f"{OLLAMA}/d", json=change, headers=headers)
        assert _code(resp) == (400, "config_file_only"), resp.text
    listed = app.http.get("/api/providers", headers=headers).json()["instances"]
    assert [(i["id"], i["command"], i["api_key_env"]) for i in listed] == [("d", [], None)]
    assert not proof.exists()


def test_a_key_stays_with_the_server_it_was_given_for(
    modelyard: Callable[..., RunningApp], openai_server: Any, plain_http_server: Any
) -> None:
    openai_server.state.api_key = "sk-given"
    app = modelyard(monitor=False)
    body = {"id": "c", "base_url": openai_server.url, "api_key": "sk-given"}
    assert app.http.post(COMPAT, json=body).json()["has_api_key"] is True
    assert app.http.get(f"{COMPAT}/c/status?refresh=true").json()["state"] == "RUNNING"

    # Attack 2: point the instance elsewhere and let the status probe send the stored key.
    moved = app.http.patch(f"{COMPAT}/c", json={"base_url": plain_http_server.url})
    assert moved.status_code == 200 and moved.json()["has_api_key"] is False
    app.http.get(f"{COMPAT}/c/status?refresh=true")
    sent = [r.headers.get("authorization") for r in plain_http_server.log.entries()]
    assert sent and not any(sent)

    # A new URL with a new key in the same request keeps the new key; the same URL keeps it.
    back = {"base_url": openai_server.url, "api_key": "sk-given"}
    assert app.http.patch(f"{COMPAT}/c", json=back).json()["has_api_key"] is True
    same = app.http.patch(f"{COMPAT}/c", json={"base_url": openai_server.url + "/"})
    assert same.json()["has_api_key"] is True
    assert app.http.get(f"{COMPAT}/c/status?refresh=true").json()["state"] == "RUNNING"


@pytest.mark.parametrize("key", ["clé", "sk key", "sk\nkey", "\u202esk"])
def test_a_key_no_header_can_carry_is_refused_where_it_is_given(
    modelyard: Callable[..., RunningApp], tmp_path: Path, key: str
) -> None:
    app = modelyard(monitor=False)
    resp = app.http.post(COMPAT, json={"id": "x", "base_url": "http://127.0.0.1:9", "api_key": key})
    assert _code(resp) == (400, "invalid_api_key")
    assert app.http.post(COMPAT, json={"id": "x", "base_url": "http://127.0.0.1:9"}).is_success
    resp = app.http.patch(f"{COMPAT}/x", json={"api_key": key})
    assert _code(resp) == (400, "invalid_api_key")

    config = tmp_path / "modelyard.toml"
    config.write_text(
        '[[instances]]\nprovider = "openai_compat"\nid = "x"\n'
        f'base_url = "http://127.0.0.1:9"\napi_key = {json.dumps(key)}\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_settings({"MODELYARD_CONFIG": str(config)})
    assert "openai_compat/x's api_key" in refused.value.detail
    with pytest.raises(ConfigError):
        load_settings({"OPENAI_API_KEY": key})


def test_a_bad_key_that_got_in_is_its_instances_error_alone(
    tmp_path: Path, ollama_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ollama_server.state.add_model("llama3.2")
    monkeypatch.setenv("MYD_TEST_KEY", "clé")  # a variable the config file names
    by_env = InstanceConfig(
        provider="ollama", id="env", base_url=ollama_server.url, api_key_env="MYD_TEST_KEY"
    )
    good = InstanceConfig(provider="ollama", id="good", base_url=ollama_server.url)
    settings = make_settings(tmp_path, [by_env, good], monitor=False)
    with running_app(settings) as app, app.services.db.engine.begin() as conn:
        row = {"provider": "ollama", "id": "old", "base_url": ollama_server.url}  # a key stored
        conn.execute(insert(InstanceRow), {**row, "api_key": "clé", "origin": "api"})  # unchecked
    with running_app(settings) as app:
        statuses = app.http.get("/api/providers/status?refresh=true").json()["providers"]
        by_id = {s["instance_id"]: (s["state"], s["reason_code"]) for s in statuses}
        broken = ("ERROR", "invalid_api_key")
        assert by_id == {"env": broken, "old": broken, "good": ("RUNNING", None)}
        assert app.http.get("/api/models/health").status_code == 200
        assert app.http.get("/api/models/status").json()["ollama"]["running"] is True
        synced = app.http.post("/api/models/sync")
        assert synced.status_code == 200
        errors = {(e["instance_id"], e["code"]) for e in synced.json()["errors"]}
        assert errors == {("env", "invalid_api_key"), ("old", "invalid_api_key")}
        query = {"provider": "ollama", "name": "llama3.2"}
        good_details = app.http.get("/api/models/details", params={**query, "instance_id": "good"})
        assert good_details.status_code == 200
        details = app.http.get("/api/models/details", params={**query, "instance_id": "old"})
        assert _code(details) == (404, "model_not_found")  # its listing failed: nothing listed
        conversation = {"provider": "ollama", "model": "llama3.2", "instance_id": "old"}
        cid = app.http.post("/api/conversations", json=conversation).json()["id"]
        events = send(app.http, cid, content="Hi")
        assert (events[-1]["type"], events[-1]["code"]) == ("error", "invalid_api_key")
        sent = [r.headers.get("authorization") or "" for r in ollama_server.log.entries()]
        assert not any("cl" in key for key in sent)
        # The owner fixes it: a new key through the API.
        fixed = app.http.patch("/api/providers/ollama/instances/old", json={"api_key": "sk-new"})
        assert fixed.status_code == 200
        status = app.http.get("/api/providers/ollama/instances/old/status?refresh=true").json()
        assert status["state"] == "RUNNING"
