"""Shared fixtures: stand-in servers (tests.fakes.fixtures), tiny GGUF files, a real modelyard."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.instance_config import InstanceConfig
from tests.support.app_server import RunningApp, make_settings, stop_managed
from tests.support.tiny_gguf import write_tiny_gguf

pytest_plugins = ["tests.fakes.fixtures", "tests.support.docker_fixtures"]


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny llama GGUF for the whole session (read-only: copy it before changing it)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def modelyard(tmp_path: Path) -> Iterator[Callable[..., RunningApp]]:
    """A factory: ``modelyard(instances=[...], **settings)`` starts a real server on a free port.

    Everything it started (the app and any managed process) is stopped after the test.
    """
    started: list[RunningApp] = []

    def start(instances: list[InstanceConfig] | None = None, **values: Any) -> RunningApp:
        settings = make_settings(tmp_path, instances, **values)
        app = RunningApp(settings).start()
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
        stop_managed(app.settings.run_dir)
