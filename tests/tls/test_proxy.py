"""Debian's nginx and Debian's caddy in front of modelyard, each running docs/PROXY.md's
configuration: clients from distinct addresses (127.0.0.2, 127.0.0.3) are seen as themselves by
the IP allow-list — on the OpenAI and Ollama endpoints alike — and the audit, whatever
X-Forwarded-For they send; a request through the proxy is never local; an untrusted peer's
X-Forwarded-For is ignored; streams and the events WebSocket pass through unbuffered."""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from websockets.sync.client import connect

from modelyard.instance_config import InstanceConfig
from modelyard.tls import create_certificate
from tests.support.app_server import RunningApp, make_settings, running_app
from tests.support.caddy import running_caddy
from tests.support.nginx import running_nginx
from tests.support.paced_upstream import PacedThread
from tests.support.servers import free_port

DOCS = Path(__file__).resolve().parents[2] / "docs" / "PROXY.md"
KEY = "proxy-test-admin-key"
INTERVAL = 0.1  # the paced model's time per token


def documented(language: str, replacements: list[tuple[str, str]]) -> str:
    """The ``language`` block of docs/PROXY.md with this test's ports and files."""
    block = re.search(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)
    assert block, f"docs/PROXY.md has no {language} configuration"
    conf = block.group(1)
    for old, new in replacements:
        assert old in conf, old
        conf = conf.replace(old, new)
    return conf


def documented_nginx(port: int, cert: Path, key: Path, upstream: int) -> str:
    return documented(
        "nginx",
        [
            ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
            ("/etc/modelyard/certs/models.example.lan.pem", str(cert)),
            ("/etc/modelyard/certs/models.example.lan.key", str(key)),
            ("proxy_pass http://127.0.0.1:8050;", f"proxy_pass http://127.0.0.1:{upstream};"),
        ],
    )


def documented_caddy(port: int, cert: Path, key: Path, upstream: int) -> str:
    # The doc's site is a public name (a certificate from ACME or `tls internal`); here it is
    # loopback with this test's certificate, so that nothing is fetched from anywhere.
    site = f"https://127.0.0.1:{port} {{\n    bind 127.0.0.1\n    tls {cert} {key}\n"
    return documented(
        "caddy",
        [
            ("models.example.lan {\n", site),
            ("reverse_proxy 127.0.0.1:8050 {", f"reverse_proxy 127.0.0.1:{upstream} {{"),
        ],
    )


PROXIES: dict[
    str,
    tuple[
        Callable[[int, Path, Path, int], str],
        Callable[[Path, str, int], AbstractContextManager[object]],
    ],
] = {
    "nginx": (documented_nginx, running_nginx),
    "caddy": (documented_caddy, running_caddy),
}


@dataclass
class Proxied:
    app: RunningApp
    proxy: str  # https://127.0.0.1:PORT
    trust: ssl.SSLContext

    def client(self, source: str, key: str | None = KEY) -> httpx.Client:
        """A client connecting from ``source`` through the proxy."""
        transport = httpx.HTTPTransport(local_address=source, verify=self.trust)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.proxy, transport=transport, headers=headers)

    def direct(self, source: str) -> httpx.Client:
        """A client connecting from ``source`` to modelyard itself."""
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.app.url, transport=transport)


@pytest.fixture(scope="module", params=sorted(PROXIES))
def proxied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxied]:
    configure, run = PROXIES[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    issued = create_certificate(tmp / "certs", ["localhost", ipaddress.ip_address("127.0.0.1")])
    port = free_port()
    with PacedThread(interval=INTERVAL) as paced:
        settings = make_settings(
            tmp,
            [InstanceConfig(provider="openai_compat", id="paced", base_url=paced.url)],
            monitor=False,
            api_key=KEY,
            forwarded_allow_ips=["127.0.0.1"],
            ip_allowlist=["127.0.0.1/32", "127.0.0.2/32"],
            public_url=f"https://localhost:{port}",
        )
        with running_app(settings) as app:
            assert app.http.post("/api/models/sync").status_code == 200
            conf = configure(port, issued.certfile, issued.keyfile, settings.port)
            with run(tmp / request.param, conf, port):
                trust = ssl.create_default_context(cafile=issued.ca_cert)
                yield Proxied(app, f"https://127.0.0.1:{port}", trust)


def test_through_the_proxy_a_request_is_never_local(proxied: Proxied) -> None:
    with proxied.direct("127.0.0.1") as direct:
        assert direct.get("/v1/models").status_code == 200  # local trust, without a key
    with proxied.client("127.0.0.2", key=None) as anonymous:
        refused = anonymous.get("/v1/models")
        assert refused.status_code == 401, refused.text
        assert anonymous.get("/ollama/api/tags").status_code == 401
    with proxied.client("127.0.0.2") as keyed:
        listed = keyed.get("/v1/models")
        assert listed.status_code == 200, listed.text
        assert [m["id"] for m in listed.json()["data"]] == ["paced"]


def test_the_allow_list_sees_each_client_behind_the_proxy(proxied: Proxied) -> None:
    with proxied.client("127.0.0.3") as outside:
        for path in ("/v1/models", "/ollama/api/tags", "/ollama/api/version", "/api/version"):
            answer = outside.get(path)
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["code"] == "ip_not_allowed"
        chat = outside.post("/ollama/api/chat", json={"model": "paced", "messages": []})
        assert chat.status_code == 403 and chat.json()["code"] == "ip_not_allowed"
        # The proxy replaces what the client says: it cannot name an allowed address.
        forged = outside.get("/v1/models", headers={"X-Forwarded-For": "127.0.0.2"})
        assert forged.status_code == 403 and forged.json()["code"] == "ip_not_allowed"
    with proxied.client("127.0.0.2") as inside:
        assert inside.get("/ollama/api/tags").status_code == 200
    entries = proxied.app.http.get(
        "/api/audit", params={"limit": 1000}, headers={"Authorization": f"Bearer {KEY}"}
    ).json()["entries"]
    clients = {e["client"] for e in entries}
    assert {"127.0.0.2", "127.0.0.3"} <= clients, clients
    assert "127.0.0.1" not in {e["client"] for e in entries if e["outcome"] == "refused"}


def test_an_untrusted_peer_cannot_name_the_client(proxied: Proxied) -> None:
    with proxied.direct("127.0.0.3") as liar:
        forged = liar.get(
            "/v1/models",
            headers={"X-Forwarded-For": "127.0.0.2", "Authorization": f"Bearer {KEY}"},
        )
        assert forged.status_code == 403 and forged.json()["code"] == "ip_not_allowed"
    with proxied.direct("127.0.0.2") as allowed:
        hidden = allowed.get(
            "/v1/models",
            headers={"X-Forwarded-For": "127.0.0.3", "Authorization": f"Bearer {KEY}"},
        )
        assert hidden.status_code == 200, hidden.text


def test_a_stream_arrives_through_the_proxy_as_it_is_made(proxied: Proxied) -> None:
    tokens = 10
    with openai.OpenAI(
        base_url=f"{proxied.proxy}/v1",
        api_key=KEY,
        http_client=proxied.client("127.0.0.2", key=None),
        max_retries=0,
    ) as sdk:
        stream = sdk.chat.completions.create(
            model="paced",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=tokens,
            stream=True,
        )
        arrivals = [time.monotonic() for chunk in stream if chunk.choices[0].delta.content]
    assert len(arrivals) == tokens
    # Buffered, every token would arrive at once when the answer ends; unbuffered, the first
    # arrives while the other nine are still being made, (tokens - 1) × INTERVAL apart.
    assert arrivals[-1] - arrivals[0] >= 0.5 * (tokens - 1) * INTERVAL


def test_an_ndjson_stream_arrives_through_the_proxy_as_it_is_made(proxied: Proxied) -> None:
    # The Ollama endpoints stream newline-delimited JSON, not server-sent events: a proxy that
    # flushed only the latter at once would hold these.
    tokens = 10
    sdk = ollama.Client(
        host=f"{proxied.proxy}/ollama",
        headers={"Authorization": f"Bearer {KEY}"},
        transport=httpx.HTTPTransport(local_address="127.0.0.2", verify=proxied.trust),
        timeout=60,
    )
    stream = sdk.chat(
        model="paced",
        messages=[{"role": "user", "content": "hi"}],
        options={"num_predict": tokens},
        stream=True,
    )
    arrivals = [time.monotonic() for part in stream if part.message.content]
    assert len(arrivals) == tokens
    assert arrivals[-1] - arrivals[0] >= 0.5 * (tokens - 1) * INTERVAL


def test_the_events_websocket_upgrades_through_the_proxy(proxied: Proxied) -> None:
    uri = proxied.proxy.replace("https", "wss", 1) + f"/ws/events?access_token={KEY}"
    with connect(uri, ssl=proxied.trust, open_timeout=30) as socket:
        first = json.loads(socket.recv(timeout=30))
    assert first["type"] == "snapshot"
