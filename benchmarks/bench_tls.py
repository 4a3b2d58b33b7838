"""HTTPS vs plain HTTP: what TLS adds to the gateway's time to first token.

Two ``modelyard serve`` processes in the same run, alike but for ``tls_certfile`` (a
certificate from ``modelyard.tls``, ECDSA P-256), both in front of the same paced stand-in
(``tests/support/paced_upstream.py``, in its own process, a token every millisecond). One
client per server keeps its connection open (the handshake is paid once, as by an SDK), and
the requests alternate between the two so that both see the same machine. The time to first
token is from sending a streamed chat request to reading its first token. Goal: HTTPS adds at
most 1 ms at p50.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from tests.support.app_server import ServerProcess
from tests.support.servers import free_port

from benchmarks.gateway_peers import paced_upstream
from modelyard.tls import create_certificate

TITLE = "HTTPS vs plain HTTP: time to first token through the gateway"
WARMUP = 20
ROUNDS = 300  # requests to each server
BODY = {
    "model": "paced",
    "messages": [{"role": "user", "content": "hi"}],
    "max_tokens": 2,
    "stream": True,
}


@contextmanager
def served(work: Path, upstream: str, tls: tuple[Path, Path, Path] | None) -> Iterator[str]:
    """``modelyard serve`` with the paced stand-in as its one instance; its URL."""
    work.mkdir(parents=True)
    config = work / "modelyard.toml"
    config.write_text(
        'monitor = false\nmodel_ttl_s = 0\nlog_level = "warning"\n'
        f'[[instances]]\nprovider = "openai_compat"\nid = "paced"\nbase_url = "{upstream}"\n'
    )
    env = {"MODELYARD_CONFIG": str(config), "MODELYARD_DATA_DIR": str(work / "data")}
    ca = None
    if tls is not None:
        ca, cert, key = tls
        env |= {"MODELYARD_TLS_CERTFILE": str(cert), "MODELYARD_TLS_KEYFILE": str(key)}
    port = free_port()
    server = ServerProcess(env, port, work / "serve.log", ca=ca).start()
    try:
        synced = httpx.post(f"{server.url}/api/models/sync", verify=server.verify, timeout=60)
        synced.raise_for_status()
        yield server.url
    finally:
        server.stop()


def first_token_s(client: httpx.Client) -> float:
    """Seconds from sending a streamed request to its first token."""
    began = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=BODY) as answer:
        answer.raise_for_status()
        first = None
        for line in answer.iter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - began
    if first is None:
        raise RuntimeError("the stream carried no token")
    return first


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(workdir: Path) -> str:
    issued = create_certificate(workdir / "certs", [ipaddress.ip_address("127.0.0.1")])
    with ExitStack() as stack:
        upstream, _ = stack.enter_context(paced_upstream(workdir, 0.001))
        plain_url = stack.enter_context(served(workdir / "plain", upstream, None))
        tls_url = stack.enter_context(
            served(workdir / "tls", upstream, (issued.ca_cert, issued.certfile, issued.keyfile))
        )
        trust = ssl.create_default_context(cafile=issued.ca_cert)
        clients = {
            "http": stack.enter_context(httpx.Client(base_url=plain_url, timeout=60)),
            "https": stack.enter_context(httpx.Client(base_url=tls_url, timeout=60, verify=trust)),
        }
        times: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(WARMUP):
            for client in clients.values():
                first_token_s(client)
        for n in range(ROUNDS):
            order = list(clients.items()) if n % 2 == 0 else list(clients.items())[::-1]
            for name, client in order:
                times[name].append(first_token_s(client))
    ms = {name: [t * 1000 for t in values] for name, values in times.items()}
    p50 = {name: statistics.median(values) for name, values in ms.items()}
    p99 = {name: percentile(values, 0.99) for name, values in ms.items()}
    added = p50["https"] - p50["http"]
    rows = "\n".join(
        f"| {label} | {p50[name]:.2f} | {p99[name]:.2f} | {p50[name] / p50['http']:.2f}× |"
        for name, label in (("http", "plain HTTP (baseline)"), ("https", "HTTPS"))
    )
    verdict = "met" if added <= 1.0 else "**not met**"
    return (
        f"## {TITLE}\n\n"
        f"{ROUNDS} streamed chat requests to each of two `modelyard serve` processes, alike but "
        "for HTTPS (an ECDSA P-256 certificate from `modelyard certs`), alternating, each "
        "client on one kept connection; both in front of the same paced stand-in (a token "
        f"every ms, 2 tokens). {WARMUP} warm-up requests each first.\n\n"
        "| server | TTFT p50 (ms) | TTFT p99 (ms) | p50 vs plain |\n|---|---|---|---|\n"
        f"{rows}\n\n"
        f"HTTPS adds {added:.2f} ms at p50 (goal ≤ 1 ms: {verdict}).\n"
    )
