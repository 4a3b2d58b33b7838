"""A download's log read as an instance's is: by level and text, the whole file, and followed
live over a WebSocket — for a real download from the local file server."""

from __future__ import annotations

import json
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.downloads.support import MiB, add_payload, create, wait_state
from tests.fakes.fileserver import FileServer
from tests.support.app_server import RunningApp
from tests.support.catalog import assert_problem


def test_filter_download_and_follow_a_downloads_log(
    modelyard: Callable[..., RunningApp], file_server: FileServer
) -> None:
    app = modelyard(download_backoff_s=0.05, download_max_attempts=1)
    payload = add_payload(file_server, "slow.gguf", 8 * MiB)
    file_server.throttle(MiB)
    task = create(app.http, source="url", url=payload.url, sha256=payload.sha256)
    log = f"/api/downloads/{task['id']}/log"
    wait_state(app.http, task["id"], {"downloading"})

    missing = create(app.http, source="url", url=file_server.url_for("nowhere.gguf"))
    wait_state(app.http, missing["id"], {"failed"})
    failed = app.http.get(f"/api/downloads/{missing['id']}/log", params={"level": "error"})
    assert failed.status_code == 200
    assert failed.json()["lines"] and all("failed" in line for line in failed.json()["lines"])
    assert app.http.get(log, params={"level": "error"}).json()["lines"] == []
    assert_problem(app.http.get(log, params={"level": "loud"}), 422, "validation_error")

    ws_url = app.url.replace("http://", "ws://") + f"/ws/downloads/{task['id']}/log"
    with connect(ws_url, open_timeout=30) as ws:
        tail = json.loads(ws.recv(timeout=30))["lines"]
        assert any("attempt 1 of 1" in line for line in tail)
        assert app.http.post(f"/api/downloads/{task['id']}/pause").status_code == 200
        followed: list[str] = []
        while not any("paused" in line for line in followed):
            followed += json.loads(ws.recv(timeout=30))["lines"]
    assert app.http.get(log, params={"q": "PAUSED"}).json()["lines"]  # case-insensitive

    whole = app.http.get(f"{log}/file")
    assert whole.status_code == 200 and "attachment" in whole.headers["content-disposition"]
    assert "attempt 1 of 1" in whole.text and "paused" in whole.text

    assert_problem(app.http.get("/api/downloads/nope/log/file"), 404, "download_not_found")
    unknown = app.url.replace("http://", "ws://") + "/ws/downloads/nope/log"
    with connect(unknown, open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["code"] == "download_not_found"
        try:
            ws.recv(timeout=30)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4404
        else:
            raise AssertionError("the socket stayed open")
