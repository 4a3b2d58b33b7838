"""Fixtures of the container tests (tests/containers, and the browser tests that show
containers): the test Docker engine and the images, with every container a test made removed
after it. Without an engine the tests using them skip, except in CI (``CI=true``), where that
is a failure: ``make test`` installs docker.io and the daemon is started here."""

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


@pytest.fixture(scope="session")
def ollama_tag(docker_client: docker.DockerClient) -> str:
    return ollama_image(docker_client)


@pytest.fixture
def clean_containers(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The client; every container a test made (ours by label, or named like ours) is
    removed after it."""
    yield docker_client
    for container in docker_client.containers.list(all=True):
        if LABEL_KEY in (container.labels or {}) or container.name.startswith(NAME_PREFIX):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
