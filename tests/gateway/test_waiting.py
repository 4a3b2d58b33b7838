"""Requests that wait — for a load, for a turn — and requests whose backend fails, seen from
the client's side of the gateway: heartbeats, 429/503 with Retry-After, cancellations, 502s."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelPolicy, ModelState, SchedulerSettings
from tests.gateway.fake_backend import FakeBackend
from tests.support.gateway_app import openai_target, running_gateway
from tests.support.llama import LLAMA_ENV, LLAMA_SERVER
from tests.support.llama_build import healthy_within
from tests.support.paced_upstream import PacedThread
from tests.support.servers import free_port
from tests.support.waiting import wait_until

MESSAGES = [{"role": "user", "content": "Say something."}]
MB = 1 << 20


def scheduler_over(backend: FakeBackend, **settings: float) -> Scheduler[str]:
    policy = ModelPolicy(max_concurrency=1, max_queue=1)
    return Scheduler(
        backend,
        SchedulerSettings(memory_budget_bytes=8 * MB, **settings),  # type: ignore[arg-type]
        policy_for=lambda _: policy,
    )


def counts(scheduler: Scheduler[str]) -> tuple[int, int]:
    """(in flight, queued) of the one model, read from the test's thread."""
    views = scheduler.snapshot()
    return (views[0].in_flight, views[0].queued) if views else (0, 0)


def test_a_streaming_client_gets_loading_heartbeats_then_its_answer(paced: PacedThread) -> None:
    backend = FakeBackend({"paced": MB}, load_s=1.2, steps=6)
    targets = {"paced": openai_target("paced", paced.url)}
    body = {"model": "paced", "messages": MESSAGES, "stream": True, "max_tokens": 3}
    with running_gateway(targets, scheduler_over(backend), heartbeat_s=0.2) as (server, _):
        with httpx.stream(
            "POST", server.url + "/v1/chat/completions", json=body, timeout=30
        ) as response:
            lines = [line for line in response.iter_lines() if line]
        reloaded = scheduler_over(FakeBackend({"paced": MB}, load_s=0.6))
    with running_gateway(targets, reloaded, heartbeat_s=0.2) as (server, _):
        chunks = list(
            openai.OpenAI(
                base_url=server.url + "/v1", api_key="x", max_retries=0
            ).chat.completions.create(model="paced", messages=MESSAGES, stream=True, max_tokens=3)
        )
    beats = [line for line in lines if line.startswith(":")]
    assert beats and all(b.startswith(": loading paced ") and b.endswith("%") for b in beats)
    assert lines.index(beats[-1]) < next(i for i, x in enumerate(lines) if x.startswith("data:"))
    assert lines[-1] == "data: [DONE]"
    # The SDK skips the comments: three tokens, no fake ones.
    assert [c.choices[0].delta.content for c in chunks if c.choices][1:4] == [
        "t0 ",
        "t1 ",
        "t2 ",
    ]


def test_a_full_queue_is_429_and_a_long_wait_503_with_retry_after(paced: PacedThread) -> None:
    backend = FakeBackend({"paced": MB})
    targets = {"paced": openai_target("paced", paced.url)}
    body = {"model": "paced", "messages": MESSAGES, "max_tokens": 100}  # 2 s to answer
    scheduler = scheduler_over(backend, queue_timeout_s=0.5)
    with (
        running_gateway(targets, scheduler) as (server, _),
        httpx.Client(timeout=30) as http,
        ThreadPoolExecutor(2) as pool,
    ):
        url = server.url + "/v1/chat/completions"
        first = pool.submit(http.post, url, json=body)  # holds the one turn
        wait_until(lambda: counts(scheduler)[0] == 1, "the first turn")
        queued = pool.submit(http.post, url, json=body)  # waits, then gives up
        wait_until(lambda: counts(scheduler)[1] == 1, "a queued request")
        full = http.post(url, json=body)
        timed_out = queued.result()
        assert first.result().status_code == 200
    assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
    assert full.headers["content-type"] == "application/problem+json"
    assert full.json()["code"] == "queue_full"
    assert full.json()["error"]["type"] == "rate_limit_error"
    assert timed_out.status_code == 503 and timed_out.json()["code"] == "queue_timeout"
    assert int(timed_out.headers["retry-after"]) >= 1


def _send(url: str, body: dict[str, object]) -> socket.socket:
    data = json.dumps(body).encode()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(data), data)
    )
    return sock


def test_a_client_that_leaves_during_the_load_cancels_it(paced: PacedThread) -> None:
    backend = FakeBackend({"paced": MB}, load_s=30, steps=300)
    targets = {"paced": openai_target("paced", paced.url)}
    scheduler = scheduler_over(backend)
    with running_gateway(targets, scheduler) as (server, app):
        sock = _send(server.url, {"model": "paced", "messages": MESSAGES, "stream": True})
        wait_until(lambda: backend.loads["paced"] == 1, "the load to start")
        sock.close()
        wait_until(lambda: backend.cancelled_loads["paced"] == 1, "the load to be cancelled")
        wait_until(lambda: app.exchanges, "the exchange to end")
        assert scheduler.snapshot()[0].state is ModelState.UNLOADED
    assert app.exchanges[0].client_gone and paced.upstream.stats.served == 0


def test_a_client_that_leaves_the_queue_gives_up_its_place(paced: PacedThread) -> None:
    backend = FakeBackend({"paced": MB})
    targets = {"paced": openai_target("paced", paced.url)}
    scheduler = scheduler_over(backend)
    body = {"model": "paced", "messages": MESSAGES, "max_tokens": 25}
    with (
        running_gateway(targets, scheduler) as (server, app),
        httpx.Client(timeout=30) as http,
        ThreadPoolExecutor(1) as pool,
    ):
        first = pool.submit(http.post, server.url + "/v1/chat/completions", json=body)
        wait_until(lambda: counts(scheduler)[0] == 1, "the first turn")
        sock = _send(server.url, {**body, "user": "queued"})
        wait_until(lambda: counts(scheduler)[1] == 1, "a queued request")
        sock.close()
        wait_until(lambda: counts(scheduler)[1] == 0, "the queue to empty")
        assert first.result().status_code == 200
        wait_until(lambda: len(app.exchanges) == 2, "both exchanges to end")
    assert paced.upstream.stats.served == 1  # the one that left never reached the backend
    view = scheduler.snapshot()[0]
    assert view.in_flight == 0 and view.queued == 0


@pytest.fixture
def doomed_llama(tiny_gguf: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A llama-server the test will kill."""
    port = free_port()
    argv = [LLAMA_SERVER, "-m", str(tiny_gguf), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "-c", "2048"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=LLAMA_ENV
    )
    url = f"http://127.0.0.1:{port}"
    assert healthy_within(proc, url, 60)
    yield proc, url
    proc.kill()
    proc.wait(10)


def test_a_backend_that_dies_mid_answer_fails_it_cleanly_and_is_marked_dead(
    doomed_llama: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = doomed_llama
    targets = {"tiny": openai_target("tiny", url)}
    with running_gateway(targets) as (server, app):
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="tiny", messages=MESSAGES, stream=True, max_tokens=2000
        )
        next(iter(stream))
        proc.kill()
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
        wait_until(lambda: app.exchanges, "the exchange to end")
        after = httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "tiny", "messages": MESSAGES},
            timeout=30,
        )
        scheduler = app.scheduler
        wait_until(
            lambda: scheduler.snapshot()[0].state is ModelState.UNLOADED, "the dead model to go"
        )
    assert app.exchanges[0].relay.backend_failed
    assert after.status_code in (502, 503)
    eviction = scheduler.snapshot()[0].last_eviction
    assert eviction is not None and eviction.reason in ("died", "load_failed")
