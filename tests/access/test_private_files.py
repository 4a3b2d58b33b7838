"""Secrets at rest (SPEC §12; issue 19, hole 8): whatever the umask modelyard is started with,
its data directory is its user's alone and so is every file it writes there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx

from tests.support.app_server import ServerProcess
from tests.support.servers import free_port


def test_a_server_started_with_umask_022_writes_nothing_others_can_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"MODELYARD_DATA_DIR": str(data), "MODELYARD_MONITOR": "off", "MODELYARD_CONFIG": ""}
    old = os.umask(0o022)  # the child inherits the careless umask the attack used
    try:
        server = ServerProcess(env, free_port(), tmp_path / "serve.log").start()
    finally:
        os.umask(old)
    try:
        # Write something everywhere: the database (and its WAL), the audit log, a download log.
        created = httpx.post(
            f"{server.url}/api/providers/ollama/instances",
            json={"id": "box", "base_url": "http://127.0.0.1:9", "api_key": "sk-secret"},
        )
        assert created.status_code == 201
        task = httpx.post(
            f"{server.url}/api/downloads",
            json={"source": "url", "url": "http://127.0.0.1:9/m.gguf"},
        )
        assert task.status_code == 201
        assert httpx.get(f"{server.url}/api/audit").status_code == 200
    finally:
        server.stop()

    leaks = []
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            leaks.append(f"{path.relative_to(tmp_path)} {oct(mode)}")
    assert leaks == []
    assert {p.name for p in data.iterdir()} >= {"modelyard.db", "logs", "run", "models"}
    assert any((data / "logs").rglob("*.log"))  # the download's log was among those checked
