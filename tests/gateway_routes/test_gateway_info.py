"""``GET /api/gateway/info``: the gateway's URLs, and snippets that work as written — each
one runs, unchanged, in a Python of its own against the gateway."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.gateway_routes.conftest import Stack


def info(stack: Stack) -> dict[str, object]:
    answer = stack.app.http.get("/api/gateway/info")
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_the_urls_are_the_address_the_caller_used(stack: Stack) -> None:
    body = info(stack)
    base = stack.app.url
    assert body["base_url"] == base and body["public_url"] is None and body["tls"] is False
    assert body["endpoints"] == {
        "openai": f"{base}/v1",
        "anthropic": base,
        "ollama": f"{base}/ollama",
    }
    listed = stack.app.http.get("/v1/models").json()["data"]
    assert body["models"] == [m["id"] for m in listed]


@pytest.mark.parametrize("client", ["openai", "anthropic", "ollama"])
def test_each_sdk_snippet_runs_as_written(stack: Stack, client: str) -> None:
    body = info(stack)
    snippets = body["snippets"]
    assert isinstance(snippets, dict)
    code = snippets[client]
    # A model of this machine's, not the hosted one (the Anthropic stand-in's) that costs.
    assert f'"{stack.app.url}' in code and '"tiny.gguf"' in code
    env = {k: v for k, v in os.environ.items() if k != "MODELYARD_API_KEY"}
    if client != "ollama":  # its snippet runs keyless under local trust; the SDKs need a key
        created = stack.app.http.post("/api/keys", json={"name": client, "scopes": ["inference"]})
        env["MODELYARD_API_KEY"] = created.json()["key"]
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip()


def test_the_curl_snippet_and_open_webui_name_the_endpoints(stack: Stack) -> None:
    body = info(stack)
    snippets = body["snippets"]
    assert isinstance(snippets, dict)
    assert f"{stack.app.url}/v1/chat/completions" in snippets["curl"]
    assert f"{stack.app.url}/v1" in snippets["open_webui"]
    assert f"{stack.app.url}/ollama" in snippets["open_webui"]
