"""``public_url``: the address every snippet names, a Host accepted by the DNS-rebinding
guard, and refused when it is not a bare scheme, host and port."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.config import load_settings
from modelyard.errors import ConfigError
from tests.support.app_server import RunningApp

PUBLIC = "https://models.example.lan"


def test_snippets_name_the_public_url_and_its_host_is_accepted(
    modelyard: Callable[..., RunningApp],
) -> None:
    app = modelyard(monitor=False, public_url=PUBLIC + "/")
    info = app.http.get("/api/gateway/info", headers={"Host": "models.example.lan"})
    assert info.status_code == 200, info.text
    body = info.json()
    assert body["base_url"] == PUBLIC and body["public_url"] == PUBLIC
    assert body["endpoints"]["openai"] == f"{PUBLIC}/v1"
    assert all(f'"{PUBLIC}' in body["snippets"][c] for c in ("openai", "anthropic", "ollama"))
    assert f"{PUBLIC}/v1/chat/completions" in body["snippets"]["curl"]
    # Only that name: the guard still refuses others.
    other = app.http.get("/api/gateway/info", headers={"Host": "evil.example"})
    assert other.status_code == 403 and other.json()["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    "value",
    [
        "models.example.lan",
        "ftp://models.example.lan",
        "https://models.example.lan/modelyard",
        "https://user:pw@models.example.lan",
        "https://models.example.lan?x=1",
        "https://models.example.lan:99999",
    ],
)
def test_a_public_url_that_is_not_a_bare_origin_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="public_url"):
        load_settings(env={}, public_url=value)


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="tls_keyfile"):
        load_settings(env={"MODELYARD_TLS_CERTFILE": "/etc/cert.pem"})


def test_the_connection_details_use_the_public_url(modelyard: Callable[..., RunningApp]) -> None:
    app = modelyard(monitor=False, public_url=PUBLIC)
    info = app.http.get("/api/connection-info").json()
    assert info["modelyard"] == PUBLIC and info["events"] == "wss://models.example.lan/ws/events"
    assert info["snippets"]["curl"].startswith(f"curl -s {PUBLIC}/")
