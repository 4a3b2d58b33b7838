"""modelyard itself on its own port, in its own process, for the gateway benchmark: its app
(``create_app``: the guards, the gateway's routes, the scheduler) on uvicorn with uvloop and
httptools, the way ``modelyard serve`` runs it.

``python -m benchmarks.gateway_server PORT DATA_DIR NAME=URL[@llama] ...`` makes each NAME an
instance of the server at URL (``@llama``: llama.cpp, whose whole answers the gateway streams
and assembles; otherwise an OpenAI-compatible server) and an alias of the one model it serves;
TTL off and no limit on concurrency, as for the peers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from modelyard.api.app import create_app
from modelyard.config import Settings
from modelyard.instance_config import InstanceConfig


def build(port: int, data_dir: Path, models: list[str]) -> FastAPI:
    instances, aliases = [], {}
    for spec in models:
        name, _, where = spec.partition("=")
        url, _, kind = where.partition("@")
        provider = "llamacpp" if kind == "llama" else "openai_compat"
        instances.append(InstanceConfig(provider=provider, id=name, base_url=url))
        served = httpx.get(url + "/v1/models", timeout=10).json()["data"][0]["id"]
        aliases[name] = f"{provider}/{name}/{served}"
    settings = Settings(
        port=port,
        data_dir=data_dir,
        instances=instances,
        aliases=aliases,
        monitor=False,
        model_ttl_s=0,
        max_concurrency=1024,  # the setting's largest: above the 256 streams run here
        max_queue=100_000,
        log_level="warning",
    )
    return create_app(settings)


def main() -> None:
    port, data_dir, models = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    uvicorn.run(
        build(port, data_dir, models),
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
