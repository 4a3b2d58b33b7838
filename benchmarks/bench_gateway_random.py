"""The gateway's randomized run (issue #20, "Measured"): thousands of requests over HTTP across
more models than ``memory_budget_bytes`` holds, each a genuine llama-server process the
scheduler starts and stops, with TTL expiries, forced unloads, killed backends and clients
that hang up while queued, loading or answering. A fixed time budget (``TIME_BUDGET_S``) and
a fixed seed.

What it counts is what must be zero: requests hung past their deadline, in-flight counts left
after the last answer, processes left running after the final unloads (orphans), and samples
where the loaded estimates summed above the budget — the scheduler's account at every change
of state, and the processes actually running, sampled every 20 ms. The tests run a bounded
version against a fake backend (``tests/gateway/test_scheduler_random.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import uvicorn
from tests.gateway.llama_backend import LlamaServers
from tests.support.gateway_app import GatewayApp, llama_target
from tests.support.servers import free_port
from tests.support.tiny_gguf import write_tiny_gguf

from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelPolicy, ModelView, SchedulerSettings

TITLE = "Gateway: a randomized run over genuine llama-servers (hangs, leaks, orphans, budget)"
SEED = 20
MODELS = 6
BUDGET = 2  # each model's estimate is 1: two of the six fit at once
REQUESTS = 3000
CLIENTS = 64  # requests in the air at once
TIME_BUDGET_S = 150.0  # no new request after this; the run ends well inside 3 minutes
QUEUE_TIMEOUT_S = 10.0
LOAD_TIMEOUT_S = 20.0
# Queued up to the queue timeout, then a load, then the answer: past this, a request hangs.
DEADLINE_S = QUEUE_TIMEOUT_S + LOAD_TIMEOUT_S + 15.0
SAMPLE_S = 0.02


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    hung: list[str] = field(default_factory=list)
    over_budget: int = 0  # samples of the scheduler's account above the budget
    processes_over: int = 0  # samples of running processes above the budget
    samples: int = 0
    most_running: int = 0
    chaos: Counter[str] = field(default_factory=Counter)
    sent: int = 0


async def _client(
    http: httpx.AsyncClient, url: str, key: str, rng: random.Random, tally: Tally
) -> None:
    body = {
        "model": key,
        "messages": [{"role": "user", "content": "Count to five."}],
        "max_tokens": rng.choice([4, 16]),
        "stream": rng.random() < 0.5,
    }

    async def ask() -> str:
        async with http.stream("POST", url + "/v1/chat/completions", json=body) as answer:
            async for _ in answer.aiter_bytes():
                pass
            return str(answer.status_code)

    task = asyncio.create_task(ask())
    if rng.random() < 0.1:  # the client hangs up at a random moment
        await asyncio.sleep(rng.uniform(0, 0.5))
        task.cancel()
    try:
        tally.statuses[await asyncio.wait_for(asyncio.shield(task), DEADLINE_S)] += 1
    except asyncio.CancelledError:
        tally.statuses["hung up"] += 1
    except TimeoutError:
        tally.hung.append(key)
        task.cancel()
    except httpx.HTTPError as exc:
        tally.statuses[type(exc).__name__] += 1


async def _chaos(
    scheduler: Scheduler[str], servers: LlamaServers, rng: random.Random, tally: Tally
) -> None:
    keys = sorted(servers.models)
    unloads: set[asyncio.Task[None]] = set()
    while True:
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        key = rng.choice(keys)
        if rng.random() < 0.6:
            task = asyncio.create_task(scheduler.unload(key))
            unloads.add(task)
            task.add_done_callback(unloads.discard)
            tally.chaos["forced unloads"] += 1
        elif key in servers.running():
            servers.kill(key)  # a crash: the next request that reaches it fails, then a check
            tally.chaos["killed backends"] += 1


async def _sample(scheduler: Scheduler[str], servers: LlamaServers, tally: Tally) -> None:
    while True:
        await asyncio.sleep(SAMPLE_S)
        running = len(servers.running())
        tally.samples += 1
        tally.most_running = max(tally.most_running, running)
        tally.processes_over += running > BUDGET
        tally.over_budget += scheduler.committed_bytes() > BUDGET


async def _run(workdir: Path) -> tuple[Tally, list[ModelView], int, float]:
    rng = random.Random(SEED)
    models = {f"m{i}": write_tiny_gguf(workdir / f"m{i}.gguf") for i in range(MODELS)}
    servers = LlamaServers(models, {key: 1 for key in models})
    policies = {
        key: ModelPolicy(ttl_s=rng.choice([0.5, 2.0, None]), max_concurrency=4, max_queue=64)
        for key in models
    }
    tally = Tally()

    def on_change(_: ModelView) -> None:
        tally.over_budget += scheduler.committed_bytes() > BUDGET

    scheduler = Scheduler(
        servers,
        SchedulerSettings(
            memory_budget_bytes=BUDGET,
            queue_timeout_s=QUEUE_TIMEOUT_S,
            load_timeout_s=LOAD_TIMEOUT_S,
        ),
        policy_for=policies.__getitem__,
        on_change=on_change,
    )
    targets = {key: llama_target(key, servers.url(key)) for key in models}
    port = free_port()
    config = uvicorn.Config(
        GatewayApp(targets, scheduler, heartbeat_s=0.25),
        host="127.0.0.1",
        port=port,
        log_level="error",
        access_log=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    side = [
        asyncio.create_task(_chaos(scheduler, servers, rng, tally)),
        asyncio.create_task(_sample(scheduler, servers, tally)),
    ]
    started = time.monotonic()
    slots = asyncio.Semaphore(CLIENTS)
    limits = httpx.Limits(max_connections=CLIENTS * 2)
    async with httpx.AsyncClient(timeout=DEADLINE_S + 5, limits=limits) as http:

        async def one() -> None:
            async with slots:
                if time.monotonic() - started < TIME_BUDGET_S:
                    tally.sent += 1
                    await _client(http, url, rng.choice(sorted(models)), rng, tally)

        await asyncio.gather(*(one() for _ in range(REQUESTS)))
    elapsed = time.monotonic() - started
    for task in side:
        task.cancel()
    await asyncio.gather(*side, return_exceptions=True)
    await asyncio.sleep(0.5)  # hung-up requests' turns are released as their tasks end
    views = scheduler.snapshot()
    for key in models:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(scheduler.unload(key), 30)
    await scheduler.aclose()
    server.should_exit = True
    await serving
    orphans = sum(proc.returncode is None for proc in servers.every_process)
    ours = {proc.pid for proc in servers.every_process}
    orphans += sum(p.pid in ours and p.is_running() for p in psutil.Process().children())
    for proc in servers.every_process:  # whatever happened, nothing outlives the run
        if proc.returncode is None:
            proc.kill()
    return tally, views, orphans, elapsed


def run(workdir: Path) -> str:
    tally, views, orphans, elapsed = asyncio.run(_run(workdir))
    leaked = sum(view.in_flight + view.queued for view in views)
    statuses = ", ".join(f"{k}: {n}" for k, n in sorted(tally.statuses.items()))
    chaos = ", ".join(f"{k}: {n}" for k, n in sorted(tally.chaos.items()))
    evictions = Counter(v.last_eviction.reason for v in views if v.last_eviction is not None)
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            f"{tally.sent} requests in {elapsed:.0f} s from {CLIENTS} clients at once, over "
            f"{MODELS} tiny GGUF models, each a genuine llama-server the scheduler starts and "
            f"stops, in a memory budget for {BUDGET}; TTLs of 0.5 s, 2 s or none per model; "
            "10 % of the clients hang up at a random moment; half the requests stream. Seed "
            f"{SEED}. Chaos: {chaos or 'none'}. Answers: {statuses}. Last eviction per model "
            f"at the end: {dict(evictions) or 'none'}.",
            "",
            "| must be zero | measured |",
            "|---|---:|",
            f"| requests hung past their deadline ({DEADLINE_S:.0f} s) | {len(tally.hung)} |",
            f"| in-flight or queued counts left after the last answer | {leaked} |",
            f"| processes left running after the final unloads | {orphans} |",
            "| scheduler's committed estimates above the budget (samples at every change "
            f"and every {SAMPLE_S * 1000:.0f} ms) | {tally.over_budget} |",
            f"| llama-server processes running above the budget ({tally.samples} samples; "
            f"most at once: {tally.most_running}) | {tally.processes_over} |",
            "",
        ]
    )
