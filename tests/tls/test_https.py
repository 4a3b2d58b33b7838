"""``modelyard serve`` over HTTPS with a certificate from ``modelyard certs``: the official
openai, anthropic and ollama SDKs verify it against the generated CA (never verify=False),
as do the CLI and the page's snippets; plain HTTP on the port gets no answer; a certificate
that cannot be used stops serve with a message."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

from tests.support.app_server import ServerProcess, stop_managed
from tests.support.llama import LLAMA_SERVER
from tests.support.servers import free_port

HELLO = [{"role": "user", "content": "hi"}]


@dataclass
class Served:
    server: ServerProcess
    env: dict[str, str]  # what the CLI run beside it sees
    ca: Path

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def key(self) -> str:
        """A new inference key: the SDKs insist on sending one, and a key sent is judged."""
        created = httpx.post(
            f"{self.server.url}/api/keys",
            json={"name": "sdk", "scopes": ["inference"]},
            verify=self.server.verify,
        )
        assert created.status_code == 201, created.text
        return str(created.json()["key"])


def certs_create(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", "certs", "create", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("https")
    models = tmp / "models"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(tiny_gguf.read_bytes())
    config = tmp / "modelyard.toml"
    config.write_text("instances = []\nmonitor = false\n")
    env = {"MODELYARD_CONFIG": str(config)}
    made = certs_create(env, "--name", "localhost", "--name", "127.0.0.1")
    assert made.returncode == 0, made.stderr
    certs = tmp / "certs"  # beside the config file
    port = free_port()
    env |= {
        "MODELYARD_DATA_DIR": str(tmp / "data"),
        "MODELYARD_MODELS_DIR": str(models),
        "MODELYARD_LLAMA_SERVER": LLAMA_SERVER,
        "MODELYARD_TLS_CERTFILE": str(certs / "localhost.pem"),
        "MODELYARD_TLS_KEYFILE": str(certs / "localhost.key"),
        "MODELYARD_PORT": str(port),
    }
    server = ServerProcess(env, port, tmp / "serve.log", ca=certs / "ca.pem").start()
    try:
        synced = httpx.post(f"{server.url}/api/models/sync", verify=server.verify, timeout=60)
        assert synced.status_code == 200, synced.text
        yield Served(server, env, certs / "ca.pem")
    finally:
        server.stop()
        stop_managed(tmp / "data" / "run")  # the model's server outlives serve, on purpose


def test_the_openai_sdk_verifies_the_generated_ca(served: Served) -> None:
    with openai.OpenAI(
        base_url=f"{served.server.url}/v1",
        api_key=served.key(),
        http_client=openai.DefaultHttpxClient(verify=served.trust()),
        max_retries=0,
    ) as sdk:
        ask(sdk)


def ask(sdk: openai.OpenAI) -> None:
    reply = sdk.chat.completions.create(model="tiny.gguf", messages=HELLO, max_tokens=4)
    assert reply.choices[0].message.content is not None
    chunks = list(
        sdk.chat.completions.create(model="tiny.gguf", messages=HELLO, max_tokens=4, stream=True)
    )
    assert chunks and chunks[-1].choices[0].finish_reason == "length"


def test_the_anthropic_sdk_verifies_the_generated_ca(served: Served) -> None:
    with anthropic.Anthropic(
        base_url=served.server.url,
        api_key=served.key(),
        http_client=anthropic.DefaultHttpxClient(verify=served.trust()),
        max_retries=0,
    ) as sdk:
        message = sdk.messages.create(model="tiny.gguf", max_tokens=4, messages=HELLO)
    assert message.usage.output_tokens == 4


def test_the_ollama_client_verifies_the_generated_ca(served: Served) -> None:
    client = ollama.Client(host=f"{served.server.url}/ollama", verify=served.trust())
    reply = client.chat(model="tiny.gguf", messages=HELLO, options={"num_predict": 4})
    assert reply.message.role == "assistant" and reply.eval_count == 4
    assert "tiny.gguf:latest" in [m.model for m in client.list().models]
    client._client.close()


def test_a_client_without_the_ca_is_refused_by_its_own_check(served: Served) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{served.server.url}/api/version", verify=ssl.create_default_context())


def test_plain_http_on_the_https_port_gets_no_answer(served: Served) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{served.server.port}/api/version", timeout=10)


def test_the_page_s_openai_snippet_runs_with_the_ca_it_names(served: Served) -> None:
    info = httpx.get(f"{served.server.url}/api/gateway/info", verify=served.trust()).json()
    assert info["tls"] is True and info["base_url"] == served.server.url
    code = info["snippets"]["openai"]
    assert f"SSL_CERT_FILE={served.ca}" in code and '"tiny.gguf"' in code
    ran = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "SSL_CERT_FILE": str(served.ca), "MODELYARD_API_KEY": served.key()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr


def test_the_cli_speaks_https_with_the_settings_alone(served: Served) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "modelyard", "ls"],
        env={**os.environ, **served.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert "tiny.gguf" in ran.stdout


def serve_fails(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", "serve"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_refuses_an_unreadable_or_mismatched_pair(served: Served, tmp_path: Path) -> None:
    certs = served.ca.parent
    other = certs_create({"MODELYARD_CONFIG": served.env["MODELYARD_CONFIG"]}, "--name", "b.lan")
    assert other.returncode == 0, other.stderr
    base = {
        "MODELYARD_DATA_DIR": str(tmp_path / "data"),
        "MODELYARD_PORT": str(free_port()),
        "MODELYARD_CONFIG": served.env["MODELYARD_CONFIG"],
    }
    for cert, key in (
        (tmp_path / "missing.pem", certs / "localhost.key"),
        (certs / "localhost.pem", certs / "b.lan.key"),  # another certificate's key
        (certs / "localhost.key", certs / "localhost.key"),  # not a certificate
    ):
        ran = serve_fails(
            {**base, "MODELYARD_TLS_CERTFILE": str(cert), "MODELYARD_TLS_KEYFILE": str(key)}
        )
        assert ran.returncode == 2, ran.stdout + ran.stderr
        assert "error:" in ran.stderr and "Traceback" not in ran.stderr
        assert not (tmp_path / "data").exists()  # refused before anything was made
    ran = serve_fails({**base, "MODELYARD_TLS_CERTFILE": str(certs / "localhost.pem")})
    assert ran.returncode == 2 and "tls_keyfile" in ran.stderr, ran.stderr
