"""The gateway's engine on its own port, in its own process, for the gateway benchmark.

``python -m benchmarks.gateway_server PORT NAME=URL[@llama] ...`` serves each model NAME from
the OpenAI-compatible server at URL (``@llama``: a llama.cpp server, whose whole answers the
gateway streams and assembles) through ``tests.support.gateway_app`` — the relay, the
scheduler (every model ready, no limit on concurrency) and ``exchange`` — on uvicorn with
uvloop and httptools, the way ``modelyard serve`` runs. The coordinator switches the
benchmark to modelyard's own routes when they land.
"""

from __future__ import annotations

import sys

import uvicorn
from tests.support.gateway_app import GatewayApp, ReadyBackend, llama_target, openai_target

from modelyard.gateway.scheduler import Scheduler
from modelyard.gateway.scheduling import ModelPolicy, SchedulerSettings

UNLIMITED = ModelPolicy(ttl_s=None, max_concurrency=100_000, max_queue=100_000)


def build(models: list[str]) -> GatewayApp:
    targets = {}
    health = {}
    for spec in models:
        name, _, where = spec.partition("=")
        url, _, kind = where.partition("@")
        targets[name] = llama_target(name, url) if kind == "llama" else openai_target(name, url)
        health[name] = url + ("/health" if kind == "llama" else "/stats")
    backend = ReadyBackend({name: 1 for name in targets}, health)
    settings = SchedulerSettings(memory_budget_bytes=len(targets))
    return GatewayApp(targets, Scheduler(backend, settings, policy_for=lambda _: UNLIMITED))


def main() -> None:
    port, models = int(sys.argv[1]), sys.argv[2:]
    uvicorn.run(
        build(models),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
