"""Every container test starts from no container of modelyard's, and leaves none
(fixtures: tests/support/docker_fixtures.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_containers_left(request: pytest.FixtureRequest) -> None:
    if "docker_client" in request.fixturenames:
        request.getfixturevalue("clean_containers")
