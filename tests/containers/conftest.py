"""The Docker engine and images of the container tests (tests/support/docker_engine.py).

Without an engine these tests skip, except in CI (``CI=true``), where that is a failure:
``make test`` installs docker.io and the tests start the daemon they need.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from modelyard.runtimes.containers import LABEL_KEY, NAME_PREFIX
from tests.support.docker_engine import Engine, llama_image, ollama_image


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    started = Engine().start()
    if started.missing:
        message = f"no Docker engine for the container tests: {started.missing}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def docker_client(engine: Engine) -> Iterator[docker.DockerClient]:
    client = engine.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def llama_tag(docker_client: docker.DockerClient) -> str:
    return llama_image(docker_client)


@pytest.fixture(autouse=True)
def no_containers_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every container a test made (ours by label, or named like ours) is removed after it."""
    yield
    if "docker_client" not in request.fixturenames:
        return
    client: docker.DockerClient = request.getfixturevalue("docker_client")
    for container in client.containers.list(all=True):
        if LABEL_KEY in (container.labels or {}) or container.name.startswith(NAME_PREFIX):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.fixture(scope="session")
def ollama_tag(docker_client: docker.DockerClient) -> str:
    return ollama_image(docker_client)
