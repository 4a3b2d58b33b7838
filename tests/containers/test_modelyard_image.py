"""modelyard itself in a container (issue 23): the repository's Dockerfile built on a Debian
base image made here with debootstrap, run with --network host, answering /api/version."""

from __future__ import annotations

import time

import docker
import httpx
import pytest

from modelyard import __version__
from tests.support.docker_engine import modelyard_image
from tests.support.servers import free_port

START_S = 120.0  # imports alone took 7-16 s on two busy cores


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient) -> str:
    return modelyard_image(docker_client)


def test_the_image_serves_on_the_host_network(
    docker_client: docker.DockerClient, image: str
) -> None:
    port = free_port()
    container = docker_client.containers.run(
        image,
        name=f"modelyard-image-test-{port}",
        network_mode="host",
        environment={"MODELYARD_PORT": str(port)},
        detach=True,
    )
    try:
        deadline = time.monotonic() + START_S
        answer = None
        while time.monotonic() < deadline:
            container.reload()
            assert container.status == "running", container.logs().decode()[-2000:]
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, container.logs().decode()
        assert answer.json()["version"] == __version__
        config = container.attrs["Config"]
        assert config["Entrypoint"] == ["modelyard", "serve"] and "/data" in config["Volumes"]
    finally:
        container.remove(force=True)
