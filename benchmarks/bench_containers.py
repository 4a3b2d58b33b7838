"""Containers (issue 23): a GGUF model started in a container by modelyard, against the same
image started by hand with the ``docker`` CLI, in the same run; and the status of 10 container
instances (4 serving, 3 paused so their port accepts and never answers, 3 stopped) against the
per-layer timeout.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

import docker
import httpx
from tests.support.app_server import make_settings, running_app
from tests.support.docker_engine import Engine, llama_image
from tests.support.servers import free_port
from tests.support.tiny_gguf import write_tiny_gguf

from modelyard.instance_config import ContainerConfig, InstanceConfig
from modelyard.runtimes.containers import LABEL_KEY

TITLE = "Containers: a GGUF model started in a container; status of 10 container instances"
ROUNDS = 5
API_TIMEOUT_MS = 1000
CONNECT_TIMEOUT_MS = 500


def _by_hand(engine: Engine, image: str, models: Path) -> float:
    """``docker run`` of the image, then ``/health`` polled every 10 ms until it answers 200."""
    port = free_port()
    name = f"bench-by-hand-{port}"
    cli = shutil.which("docker")
    assert cli is not None, "the docker CLI (docker.io) is needed for the baseline"
    argv = [cli, "-H", engine.url, "run", "-d", "--rm", "--name", name, "--network", "host"]
    argv += ["-v", f"{models}:/models:ro", image, "-m", "/models/tiny.gguf"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "-c", "2048"]
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    with httpx.Client(timeout=1) as http:
        while True:
            try:
                if http.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    took = time.perf_counter() - began
    subprocess.run([cli, "-H", engine.url, "rm", "-f", name], check=True, capture_output=True)
    return took


def _started(workdir: Path, engine: Engine, image: str, models: Path) -> list[float]:
    settings = make_settings(
        workdir / "start",
        models_dir=models,
        docker_host=engine.url,
        gguf_runtime="container",
        llama_image=image,
    )
    ref = {"provider": "llamacpp", "name": "tiny.gguf"}
    times: list[float] = []
    with running_app(settings) as app:
        app.http.post("/api/models/sync").raise_for_status()
        for _ in range(ROUNDS):
            began = time.perf_counter()
            answer = app.http.post("/api/models/start", json=ref)
            times.append(time.perf_counter() - began)
            assert answer.json()["status"] == "loaded", answer.text
            app.http.post("/api/models/stop", json=ref).raise_for_status()
    return times


def _status(workdir: Path, engine: Engine, image: str, models: Path) -> tuple[list[float], str]:
    def boxed(id: str) -> InstanceConfig:
        return InstanceConfig(
            provider="llamacpp",
            id=id,
            base_url=f"http://127.0.0.1:{free_port()}",
            managed=True,
            model=str(models / "tiny.gguf"),
            ctx_size=256,
            container=ContainerConfig(image=image),
        )

    instances = [boxed(f"c{i}") for i in range(10)]
    settings = make_settings(
        workdir / "status",
        instances,
        models_dir=models,
        docker_host=engine.url,
        monitor=False,
        api_timeout_ms=API_TIMEOUT_MS,
        connect_timeout_ms=CONNECT_TIMEOUT_MS,
    )
    client = engine.client()
    fresh: list[float] = []
    with running_app(settings) as app:
        for inst in instances[:7]:
            app.http.post(f"/api/providers/llamacpp/instances/{inst.id}/start").raise_for_status()
        for inst in instances[:7]:
            while (
                app.http.get(
                    f"/api/providers/llamacpp/instances/{inst.id}/status", params={"refresh": True}
                ).json()["state"]
                != "RUNNING"
            ):
                time.sleep(0.05)
        for inst in instances[4:7]:  # hung: the port accepts, nothing answers
            client.containers.get(f"modelyard-llamacpp-{inst.id}").pause()
        for inst in instances[7:]:  # created and stopped
            app.http.post(f"/api/providers/llamacpp/instances/{inst.id}/start").raise_for_status()
            app.http.post(f"/api/providers/llamacpp/instances/{inst.id}/stop").raise_for_status()
        app.http.get("/api/providers/status", params={"refresh": True})  # warm-up
        body: dict[str, list[dict[str, str]]] = {}
        for _ in range(ROUNDS):
            began = time.perf_counter()
            body = app.http.get("/api/providers/status", params={"refresh": True}).json()
            fresh.append(time.perf_counter() - began)
        states = sorted(f"{s['state']}" for s in body["providers"])
        for container in client.containers.list(all=True, filters={"label": LABEL_KEY}):
            container.remove(force=True)
    client.close()
    return fresh, ", ".join(states)


def run(workdir: Path) -> str:
    engine = Engine().start()
    if engine.missing:
        raise RuntimeError(engine.missing)
    try:
        client: docker.DockerClient = engine.client()
        image = llama_image(client)
        client.close()
        models = workdir / "models"
        write_tiny_gguf(models / "tiny.gguf")
        by_hand = [_by_hand(engine, image, models) for _ in range(ROUNDS)]
        managed = _started(workdir, engine, image, models)
        by_hand += [_by_hand(engine, image, models) for _ in range(ROUNDS)]
        fresh, states = _status(workdir, engine, image, models)
    finally:
        engine.stop()
    hand_p50, managed_p50 = statistics.median(by_hand), statistics.median(managed)
    layer = max(API_TIMEOUT_MS, CONNECT_TIMEOUT_MS) / 1000
    return f"""## {TITLE}

How: a test Docker daemon (bridge off, host network), the image of the genuine `llama-server`
the tests use (imported from the binary and the libraries `ldd` lists), a tiny GGUF.
**Start**: `POST /api/models/start` with `gguf_runtime = "container"` (answers once the model
has loaded) against `docker run -d --network host -v models:/models:ro IMAGE …` by hand with
the docker CLI, then `GET /health` every 10 ms until 200; {ROUNDS} starts through modelyard
between two sets of {ROUNDS} by hand, in the same run. **Status**: 10 container instances
(4 serving, 3 paused: port open, API silent; 3 stopped), per-layer timeouts API
{API_TIMEOUT_MS} ms and connect {CONNECT_TIMEOUT_MS} ms, {ROUNDS} fresh checks of all 10
(`?refresh=true`) after a warm-up. States seen: {states}.

| measure | value | ratio / goal |
|---|---|---|
| started through modelyard, median / worst | {managed_p50 * 1000:.0f} / {max(managed) * 1000:.0f} ms | {managed_p50 / hand_p50:.2f}× by hand (goal ≤ 1.2×) |
| `docker run` by hand until `/health` is 200, median / worst | {hand_p50 * 1000:.0f} / {max(by_hand) * 1000:.0f} ms | baseline |
| fresh status of 10 container instances, median / worst | {statistics.median(fresh) * 1000:.0f} / {max(fresh) * 1000:.0f} ms | worst {max(fresh) / layer:.2f}× the per-layer timeout (goal ≤ 1.20×) |
"""
