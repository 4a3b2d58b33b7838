"""A real ``python -m modelyard serve`` stopped cleanly, then killed with SIGKILL mid-download,
then started again: the task resumes from its part file each time, completes with the right
sha256, and stays the only task."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.downloads.http_engine import part_path
from tests.downloads.support import (
    MiB,
    add_payload,
    create,
    wait_bytes,
    wait_state,
)
from tests.fakes.fileserver import FileServer
from tests.support.app_server import ServerProcess
from tests.support.servers import free_port
from tests.support.waiting import wait_until


def locked(path: Path) -> bool:
    """Whether another process holds the part file's lock (as a running download does)."""
    with path.open("rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "modelyard.toml"
    config.write_text("instances = []\nmonitor = false\n")
    return {"MODELYARD_CONFIG": str(config), "MODELYARD_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Every server process a test starts; all are stopped (killed if need be) after it."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


def test_a_download_survives_a_clean_stop_and_a_sigkill(
    file_server: FileServer,
    server_env: dict[str, str],
    servers: list[ServerProcess],
    tmp_path: Path,
) -> None:
    payload = add_payload(file_server, "model.gguf", 8 * MiB)
    file_server.throttle(2 * MiB)
    dest = tmp_path / "data" / "models" / payload.name

    def serve(n: int) -> ServerProcess:
        server = ServerProcess(server_env, free_port(), tmp_path / f"serve-{n}.log")
        servers.append(server.start())
        return server

    first = serve(1)
    with httpx.Client(base_url=first.url, timeout=30) as http:
        task = create(http, source="url", url=payload.url, sha256=payload.sha256)
        wait_bytes(http, task["id"], MiB)
    first.stop()  # SIGTERM: a clean shutdown keeps the task for the next start

    second = serve(2)
    with httpx.Client(base_url=second.url, timeout=30) as http:
        wait_bytes(http, task["id"], 3 * MiB)  # resumed on its own
    second.kill()  # SIGKILL: no shutdown code runs
    # Its download worker sees its stdin close, stops and lets go of the part file.
    wait_until(lambda: not locked(part_path(dest)), "the orphaned worker to release the part")
    kept = part_path(dest).stat().st_size
    assert kept >= 3 * MiB and not dest.exists()

    file_server.clear_faults()
    third = serve(3)
    with httpx.Client(base_url=third.url, timeout=30) as http:
        done = wait_state(http, task["id"], {"completed", "failed"})
        listed = http.get("/api/downloads").json()["downloads"]
        log = http.get(f"/api/downloads/{task['id']}/log").json()["lines"]

    assert done["state"] == "completed", done
    assert done["sha256"] == payload.sha256 and dest.read_bytes() == payload.data
    assert [t["id"] for t in listed] == [task["id"]]  # exactly one task, all along
    gets = [r for r in file_server.requests if r.method == "GET"]
    assert len(gets) == 3 and gets[0].header("Range") is None
    assert gets[1].header("Range") is not None and gets[1].header("If-Range")
    assert gets[2].header("Range") == f"bytes={kept}-" and gets[2].header("If-Range")
    assert gets[2].status == 206 and gets[2].sent == len(payload.data) - kept
    assert sum("restarted" in line for line in log) == 2
