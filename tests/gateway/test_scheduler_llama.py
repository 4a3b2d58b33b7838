"""The scheduler with genuine llama-server processes behind the gateway: one process per
load however many requests arrive, eviction within the memory budget, TTL, restarts of a
server that died, and no process left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import openai
import pytest

from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelPolicy, ModelState, SchedulerSettings
from tests.gateway.llama_backend import LlamaServers
from tests.support.gateway_app import GatewayApp, llama_target, running_gateway
from tests.support.servers import ServerThread
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.waiting import wait_until

MB = 1 << 20
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[LlamaServers]:
    models = {key: write_tiny_gguf(tmp_path / f"{key}.gguf", seed=n) for n, key in enumerate("abc")}
    backend = LlamaServers(models, {key: 4 * MB for key in models})
    yield backend
    for proc in backend.every_process:  # whatever the test left loaded
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


def gateway_for(
    backend: LlamaServers, policy: ModelPolicy, budget: int = 8 * MB
) -> tuple[AbstractContextManager[tuple[ServerThread, GatewayApp]], Scheduler[str]]:
    scheduler = Scheduler(
        backend,
        SchedulerSettings(memory_budget_bytes=budget, queue_timeout_s=120),
        policy_for=lambda _: policy,
    )
    targets = {key: llama_target(key, backend.url(key)) for key in backend.models}
    return running_gateway(targets, scheduler, heartbeat_s=0.1), scheduler


def state(scheduler: Scheduler[str], key: str) -> ModelState | None:
    return next((v.state for v in scheduler.snapshot() if v.key == key), None)


def test_fifty_simultaneous_requests_start_one_server_and_all_succeed(
    servers: LlamaServers,
) -> None:
    gateway, _ = gateway_for(servers, ModelPolicy(max_concurrency=4, max_queue=64))

    async def burst(url: str) -> list[str]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        answers = await asyncio.gather(
            *(
                client.chat.completions.create(model="a", messages=MESSAGES, max_tokens=3)
                for _ in range(50)
            )
        )
        await client.close()
        return [a.choices[0].message.content or "" for a in answers]

    with gateway as (server, app):
        texts = asyncio.run(burst(server.url))
    assert len(texts) == 50 and all(texts)
    assert servers.starts["a"] == 1 and servers.most_running == 1
    assert all(e.status == 200 for e in app.exchanges)
    assert sum(e.waited_for_load for e in app.exchanges) >= 1


def test_the_budget_evicts_the_least_recently_used_server(servers: LlamaServers) -> None:
    gateway, scheduler = gateway_for(servers, ModelPolicy(ttl_s=None))
    with gateway as (server, _):
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        for key in "abac":  # b is the least recently used when c needs room
            client.chat.completions.create(model=key, messages=MESSAGES, max_tokens=2)
            assert len(servers.running()) <= 2
        wait_until(lambda: sorted(servers.running()) == ["a", "c"], "b's server to stop")
        assert state(scheduler, "b") is ModelState.UNLOADED
    assert servers.most_running == 2 and servers.starts == {"a": 1, "b": 1, "c": 1}


def test_an_idle_server_is_stopped_after_its_ttl(servers: LlamaServers) -> None:
    gateway, scheduler = gateway_for(servers, ModelPolicy(ttl_s=0.5))
    with gateway as (server, _):
        httpx.post(
            server.url + "/v1/chat/completions",
            json={"model": "a", "messages": MESSAGES, "max_tokens": 2},
            timeout=60,
        ).raise_for_status()
        wait_until(lambda: servers.procs["a"].returncode is not None, "the idle server to stop")
        view = next(v for v in scheduler.snapshot() if v.key == "a")
    assert view.state is ModelState.UNLOADED
    assert view.last_eviction is not None and view.last_eviction.reason == "ttl"


def test_a_server_that_died_mid_answer_is_restarted_by_the_next_request(
    servers: LlamaServers,
) -> None:
    gateway, scheduler = gateway_for(servers, ModelPolicy(ttl_s=None))
    with gateway as (server, _):
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="a", messages=MESSAGES, max_tokens=2000, stream=True
        )
        next(iter(stream))
        servers.kill("a")
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
        wait_until(lambda: state(scheduler, "a") is ModelState.UNLOADED, "the death noticed")
        with httpx.stream(
            "POST",
            server.url + "/v1/chat/completions",
            json={"model": "a", "messages": MESSAGES, "max_tokens": 2, "stream": True},
            timeout=60,
        ) as again:
            lines = [line for line in again.iter_lines() if line]
    assert servers.starts["a"] == 2  # it waited for the restart (a heartbeat shows only when
    # the restart outlasts the heartbeat interval, which a tiny model's may not)
    assert lines[-1] == "data: [DONE]"
    eviction = next(v for v in scheduler.snapshot() if v.key == "a").last_eviction
    assert eviction is not None and eviction.reason == "died"
